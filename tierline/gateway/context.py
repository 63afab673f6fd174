"""What every route shares: the gateway's parts, the caller's tenant, and JSON answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tierline.gateway.chat import Chat
from tierline.gateway.limits import Limits
from tierline.producer.batches import Batches
from tierline.producer.client import Client

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Gateway:
    """The HTTP side of a :class:`Client`: its chat and batch logic, under ``limits``."""

    client: Client
    chat: Chat
    batches: Batches
    limits: Limits


def tenant_of(request: Request) -> str | None:
    """The caller's tenant, as the guard found it (None on an open gateway)."""
    tenant: str | None = request.scope["state"].get("tenant")
    return tenant


def owner_of(request: Request) -> str:
    """The tenant whose files and batches a call may see: ``default`` on an open gateway."""
    return tenant_of(request) or DEFAULT_TENANT


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, media_type="application/json")
