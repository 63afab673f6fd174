"""Names that say what a message carries, for Flower and the worker log.

A bundle message's arguments are a list of request ids: read alone they say nothing about
the lane, tier or size. Before a ``tierline.*`` message is published, Celery's
``before_task_publish`` signal lets us set two protocol-2 headers on it: ``shadow`` (the
name Flower and the log show, e.g. ``call_models[t1.batch x64]``) and ``argsrepr`` (the
arguments as shown, e.g. ``tier=t1 lane=batch bundle=64 ids=…``). What runs is unchanged:
the worker dispatches on the ``task`` header, not on ``shadow``.
"""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish

_SHORT = {"tierline.call_models": "call_models", "tierline.route_requests": "route_requests"}
_SHOWN_IDS = 3


def label(task: str, routing_key: str, args: Any, kwargs: Any) -> tuple[str, str] | None:
    """(shadow name, argsrepr) for a bundle or routing message; None for any other task."""
    short = _SHORT.get(task)
    if short is None or not args or not isinstance(args[0], list):
        return None
    ids = args[0]
    parts = routing_key.split(".")
    if parts[0] == "tier" and len(parts) == 3:
        where, fields = f"{parts[1]}.{parts[2]}", f"tier={parts[1]} lane={parts[2]}"
    elif parts[0] == "ingress" and len(parts) == 2:
        where, fields = parts[1], f"lane={parts[1]}"
    else:
        where, fields = routing_key, f"queue={routing_key}"
    shown = ", ".join(str(i) for i in ids[:_SHOWN_IDS]) + (", …" if len(ids) > _SHOWN_IDS else "")
    resumed = " resumed" if isinstance(kwargs, dict) and kwargs.get("resumed") else ""
    return (f"{short}[{where} x{len(ids)}]",
            f"{fields} bundle={len(ids)}{resumed} ids=[{shown}]")


@before_task_publish.connect
def _name_the_message(sender: str | None = None, body: Any = None, routing_key: str = "",
                      headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None or not isinstance(body, (tuple, list)) or not body:
        return
    named = label(sender or headers.get("task", ""), routing_key or "", body[0],
                  body[1] if len(body) > 1 else {})
    if named is not None and not headers.get("shadow"):
        headers["shadow"], headers["argsrepr"] = named
