"""What a command runs on: the embedded stack when no servers are configured, and a client on
the record the settings name (checked to exist first, so asking never leaves an empty one)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.cli.console import err
from tierline.router.errors import InvalidInput

if TYPE_CHECKING:
    from tierline.config.settings import Settings
    from tierline.producer.client import Client


def session(settings: Settings, policy_path: Path | None = None) -> AbstractContextManager[Any]:
    """In production, nothing to start (yields None); with no servers configured, the
    embedded stack (yields its runtime)."""
    if not settings.embedded:
        return nullcontext(None)
    from tierline.producer.embedded import embedded, record_path

    err.print("[dim]no TIERLINE_BROKER_URL set: running embedded in this process "
              f"(record {settings.database_url})[/dim]")
    return embedded(policy_path or settings.policy_path, database=record_path(settings),
                    settings=settings)


def client_for(settings: Settings, rt: Any = None) -> Client:
    """A client on the runtime ``rt`` (the embedded stack's), else on the process's, after
    checking that an embedded record exists."""
    from tierline.producer.client import Client

    if rt is None:
        path = settings.sqlite_path
        if path is not None and not path.exists():
            makers = ("`tierline submit FILE` or `tierline demo`" if settings.embedded
                      else "`tierline db upgrade`")
            raise InvalidInput(f"no tierline record at {path} yet: {makers} makes it "
                               "(TIERLINE_HOME or TIERLINE_DATABASE_URL choose another)")
    return Client(rt)
