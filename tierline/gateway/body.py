"""Reading a request body within its limit and its read timeout, and parsing it safely.

The declared ``Content-Length`` is refused at once when over the limit (413, nothing read);
a chunked or lying body is counted as it comes and refused as soon as the count passes the
limit. A body that pauses longer than the read timeout is 408. JSON is parsed by
:func:`tierline.router.untrusted.loads` (depth, number size, NUL, lone surrogates): 400 with a
reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import ClientDisconnect, Request

from tierline.gateway.errors import HttpError, bad, too_large
from tierline.router.errors import InvalidInput
from tierline.router.untrusted import loads


async def chunks(request: Request, limit: int,
                 read_timeout_s: float) -> AsyncGenerator[bytes, None]:
    """The body's pieces, refusing it (413) once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(declared, limit)
    size = 0
    stream = request.stream().__aiter__()
    while True:
        try:
            async with asyncio.timeout(read_timeout_s):  # no task per piece, as wait_for makes
                piece = await stream.__anext__()
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise HttpError(408, f"the body paused for more than {read_timeout_s:g} s",
                            "invalid_request_error", "request_timeout") from None
        except ClientDisconnect:
            raise HttpError(400, "the client left before sending its whole body",
                            "invalid_request_error", "incomplete_body") from None
        size += len(piece)
        if size > limit:
            raise too_large(f"over {limit}", limit)
        if piece:
            yield piece


async def read(request: Request, limit: int, read_timeout_s: float) -> bytes:
    """The whole body, within ``limit`` bytes."""
    return b"".join([piece async for piece in chunks(request, limit, read_timeout_s)])


def parse_json(data: bytes) -> Any:
    """The body as JSON (an empty body is ``null``); 400 with the reason otherwise."""
    if not data.strip():
        return None
    try:
        return loads(data)
    except InvalidInput as exc:
        raise bad(f"the body is not valid JSON: {exc}", "invalid_json") from None
