"""The gateway's error answers: OpenAI's error shape, and a 500 that names only a request id."""

from __future__ import annotations

import json
import logging

from tierline.producer.openai_shapes import HttpError, bad

log = logging.getLogger("tierline.gateway")

__all__ = ["HttpError", "bad", "error_body", "internal", "log", "too_large", "unauthorized"]


def too_large(size: int | str, limit: int) -> HttpError:
    return HttpError(413, f"the body is {size} bytes; the limit is {limit}",
                     "invalid_request_error", "body_too_large")


def unauthorized(presented: bool) -> HttpError:
    what = "a wrong API key" if presented else "no API key"
    return HttpError(401, f"{what}: send Authorization: Bearer <key> with a key the gateway "
                     "knows (its keys file, or `tierline keys create`)", "invalid_request_error",
                     "invalid_api_key")


def internal(request_id: str) -> HttpError:
    """What a client is told of a failure inside: nothing but where the log has the rest."""
    return HttpError(500, f"internal error (request id {request_id})", "server_error",
                     "internal")


def error_body(error: HttpError) -> bytes:
    return json.dumps(error.body).encode()
