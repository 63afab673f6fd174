"""Where tierline finds its broker, database and policy: read from the environment on demand."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_BROKER = "memory://"
GATEWAY_CALLS = ("queue", "inline")  # TIERLINE_GATEWAY_CALLS: see Settings.gateway_calls
POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"


@dataclass(frozen=True)
class Settings:
    """Connection strings and the policy file; ``embedded`` when no servers are configured."""

    broker_url: str
    database_url: str
    policy_path: Path
    redis_url: str | None = None  # the absorber's counters; None: in-memory (embedded)
    # How a gateway sends the realtime bundles it routed: to the tier's queue, or answered in
    # its own process (workers.inline; docs/gateway.md weighs the two).
    gateway_calls: str = "queue"

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def sqlite_path(self) -> Path | None:
        """The record's file when it is SQLite, else None."""
        if not self.database_url.startswith("sqlite:///"):
            return None
        return Path(self.database_url.removeprefix("sqlite:///"))


def data_dir(env: Mapping[str, str]) -> Path:
    """Where the embedded record lives, whatever folder a command runs in: ``TIERLINE_HOME``,
    else ``$XDG_DATA_HOME/tierline``, else ``~/.local/share/tierline``."""
    if env.get("TIERLINE_HOME"):
        return Path(env["TIERLINE_HOME"]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "tierline"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "tierline"


def default_policy_path(env: Mapping[str, str]) -> Path:
    """``TIERLINE_POLICY`` if set, else ``policies/$TIERLINE_ENV.yaml`` (default ``dev``)."""
    if env.get("TIERLINE_POLICY"):
        return Path(env["TIERLINE_POLICY"])
    return POLICY_DIR / f"{env.get('TIERLINE_ENV', 'dev')}.yaml"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``TIERLINE_BROKER_URL``, ``TIERLINE_DATABASE_URL``, ``TIERLINE_REDIS_URL``
    (absorber counters; defaults to a Redis broker's URL), ``TIERLINE_GATEWAY_CALLS``
    (``queue``, the default, or ``inline``) and the policy variables.

    With no URL set, the embedded default: in-memory broker and absorber, and the SQLite
    file ``tierline.sqlite`` in the data directory (see :func:`data_dir`).
    """
    env = os.environ if env is None else env
    broker = env.get("TIERLINE_BROKER_URL") or EMBEDDED_BROKER
    gateway_calls = env.get("TIERLINE_GATEWAY_CALLS") or "queue"
    if gateway_calls not in GATEWAY_CALLS:
        raise ValueError(f"TIERLINE_GATEWAY_CALLS={gateway_calls!r}: use one of "
                         f"{', '.join(GATEWAY_CALLS)}")
    return Settings(
        broker_url=broker,
        database_url=(env.get("TIERLINE_DATABASE_URL")
                      or f"sqlite:///{data_dir(env) / 'tierline.sqlite'}"),
        policy_path=default_policy_path(env),
        redis_url=env.get("TIERLINE_REDIS_URL") or (broker if broker.startswith("redis") else None),
        gateway_calls=gateway_calls,
    )
