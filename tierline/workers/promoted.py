"""Routing with the bundle promoted in the record (policy ``learning.route_with: promoted``).

The tier worker's step loop asks the runtime for its trained parts and step machine
(``Runtime.learned``). With this setting they come from the bundle promoted in the
``bundles`` table (tierline.record.bundles): its files and the tiers and strategy it was recorded
with. The record is read again at most once every ``REFRESH_S``, so a nightly promotion or a
``tierline router bundles rollback`` reaches every worker within a minute, without a
restart. With no bundle promoted, or one that cannot be loaded (its files gone, trained
for other models), the policy's own strategy routes, and the reason is logged once per
bundle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from tierline.record import bundles
from tierline.router.errors import TierlineError
from tierline.router.policy import Policy
from tierline.router.strategy_spec import StrategySpec

log = logging.getLogger(__name__)

REFRESH_S = 60.0


def learned_from(policy: Policy, record: dict[str, Any]) -> tuple[Any, Any]:
    """The parts and step machine of a recorded bundle, over the tiers it was recorded with."""
    from tierline.router.learned.bundle import load_bundle
    from tierline.router.strategies.learned import live_strategy

    spec = record["policy"]
    tiers = {name: tuple(models) for name, models in spec["tiers"].items()}
    routed = policy.model_copy(update={"tiers": tiers,
                                       "strategy": StrategySpec.model_validate(spec["strategy"])})
    bundle = load_bundle(record["path"], list(policy.models))
    return bundle, live_strategy(routed, bundle)


@dataclass
class Promoted:
    """The promoted bundle's parts, re-read from the record at most every ``REFRESH_S``."""

    fallback: Callable[[], tuple[Any, Any]]  # the policy's own parts
    checked_at: float = float("-inf")
    bundle_id: str | None = None
    parts: tuple[Any, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self, engine: Engine, policy: Policy, now_s: float) -> tuple[Any, Any]:
        """The parts to route with now."""
        with self._lock:
            if now_s - self.checked_at >= REFRESH_S:
                self.checked_at = now_s
                self._refresh(engine, policy)
            return self.parts if self.parts is not None else self.fallback()

    def _refresh(self, engine: Engine, policy: Policy) -> None:
        try:
            with engine.connect() as conn:
                record = bundles.promoted(conn)
        except Exception as exc:  # noqa: BLE001 -- the record away: keep what is in use
            log.warning("promoted bundle not re-read (%s): routing as before", exc)
            return
        found = None if record is None else str(record["id"])
        if found == self.bundle_id:
            return
        self.bundle_id = found
        if record is None:
            log.warning("no bundle is promoted: routing with the policy's strategy")
            self.parts = None
            return
        try:
            self.parts = learned_from(policy, record)
        except (TierlineError, OSError, KeyError, ValueError) as exc:
            log.error("promoted bundle %s cannot be used (%s): routing with the policy's "
                      "strategy", found, exc)
            self.parts = None
            return
        log.warning("routing with promoted bundle %s (%s)", found, record["label"])
