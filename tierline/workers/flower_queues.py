"""Flower, told every queue of the policy: ``celery -A tierline.workers.flower_queues flower``.

Flower 2.x finds the queues it shows (broker page, ``/api/queues/length``) in
``BaseHandler.get_active_queue_names``: the union of the ``active_queues`` that online
workers report to ``inspect``, and only when no worker is online, ``task_default_queue``
and ``task_queues``. A queue that no running worker consumes is invisible, and a tier
backlog is exactly that: bundles waiting in ``tier.t1.batch`` while its worker is down or
busy elsewhere. This module keeps Flower's lookup and adds every ingress and tier queue of
the policy (``tierline.workers.app.all_queues``) to it, so each is listed with its depth
(Redis ``LLEN``), zero or not, whoever consumes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tierline.config.settings import settings_in_force
from tierline.router.policy import load_policy
from tierline.workers.app import all_queues, app

__all__ = ["app", "policy_queue_names", "show_every_queue"]


def policy_queue_names() -> list[str]:
    """Every ingress and tier queue of the configured policy."""
    return all_queues(load_policy(settings_in_force().policy_path))


def show_every_queue(handler_class: Any, names: Callable[[], list[str]] = policy_queue_names
                     ) -> None:
    """Make ``handler_class.get_active_queue_names`` also return ``names()``."""
    found = handler_class.get_active_queue_names
    if getattr(found, "shows_every_queue", False):
        return

    def get_active_queue_names(self: Any) -> list[str]:
        return sorted(set(found(self)) | set(names()))

    get_active_queue_names.shows_every_queue = True  # type: ignore[attr-defined]
    handler_class.get_active_queue_names = get_active_queue_names


try:  # only the Flower process has (and needs) Flower's handlers
    from flower.views import BaseHandler
except ImportError:  # pragma: no cover - flower is a dependency
    pass
else:
    show_every_queue(BaseHandler)
