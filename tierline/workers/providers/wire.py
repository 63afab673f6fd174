"""One HTTP exchange with a model API: POST JSON, read a capped body, and translate every
httpx failure and non-2xx status into the error tree, once, here."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from tierline.router.errors import (
    InvalidInput,
    MalformedResponse,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
)
from tierline.router.untrusted import check

MAX_BODY_BYTES = 10 * 1024 * 1024  # a chat answer is kilobytes; more is a broken server
ERROR_BODY_BYTES = 64 * 1024  # an error reason is a sentence; we keep 300 characters of it
ERROR_TEXT_CHARS = 300  # enough to read the server's reason, short enough for a log line
DEFAULT_RETRY_AFTER_S = 1.0


def endpoint(base_url: str, path: str) -> str:
    """``base_url`` + ``/v1/`` + ``path``; accepts base URLs with or without the ``/v1``."""
    base = base_url.rstrip("/")
    # OpenAI-style SDK settings include /v1 in the base URL; bare host URLs do not.
    return f"{base}/{path}" if base.endswith("/v1") else f"{base}/v1/{path}"


def send(
    client: httpx.Client,
    url: str,
    *,
    headers: Mapping[str, str],
    payload: Mapping[str, Any],
    timeout_s: float,
    model: str,
) -> httpx.Response:
    """POST ``payload``; return the open (streaming) 2xx response, or raise a ProviderError."""
    try:
        content = json.dumps(payload, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:  # a lone surrogate that got past the intake
        raise Rejected(f"{model}: the request holds text that is not Unicode ({exc.reason} at "
                       f"character {exc.start}); it was not sent", model=model) from None
    try:
        request = client.build_request(
            "POST", url, content=content, headers=headers, timeout=httpx.Timeout(timeout_s)
        )
        response = client.send(request, stream=True)
    except httpx.InvalidURL as exc:  # not an HTTPError: a configuration mistake
        raise Rejected(f"{model}: bad endpoint URL {url!r}: {exc}", model=model) from exc
    except httpx.HTTPError as exc:
        raise translate(exc, model) from exc
    if response.is_success:
        return response
    try:
        deadline_at = time.monotonic() + timeout_s
        chunks = iter_body(
            response, deadline_at=deadline_at, model=model, max_bytes=ERROR_BODY_BYTES
        )
        body = b"".join(chunks)
    except ProviderError:
        body = b""  # the status already says what went wrong; a broken error body adds nothing
    finally:
        response.close()
    raise status_error(response.status_code, response.headers, body, model)


def iter_body(
    response: httpx.Response, *, deadline_at: float, model: str, max_bytes: int = MAX_BODY_BYTES
) -> Iterator[bytes]:
    """Decoded body chunks, failing past ``max_bytes`` or past ``deadline_at`` (monotonic)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        reason = f"{model}: body of {declared} bytes is over the {max_bytes} byte cap"
        raise MalformedResponse(reason, model=model)
    total = 0
    try:
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise MalformedResponse(f"{model}: body over the {max_bytes} byte cap", model=model)
            # httpx's timeouts are per read; this bounds the whole body by the budget.
            if time.monotonic() > deadline_at:
                raise Unavailable(f"{model}: timed out reading the response", model=model)
            yield chunk
    except httpx.RemoteProtocolError as exc:
        raise MalformedResponse(f"{model}: response cut short: {exc}", model=model) from exc
    except httpx.HTTPError as exc:
        raise translate(exc, model) from exc


def read_json(response: httpx.Response, *, deadline_at: float, model: str) -> dict[str, Any]:
    """The whole body parsed as a JSON object, or MalformedResponse saying why not."""
    return parse_object(b"".join(iter_body(response, deadline_at=deadline_at, model=model)), model)


def parse_object(data: str | bytes, model: str) -> dict[str, Any]:
    """A JSON object (one stream event's data), or MalformedResponse."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise MalformedResponse(f"{model}: not JSON: {_snippet(data)!r}", model=model) from exc
    except RecursionError:
        raise MalformedResponse(f"{model}: JSON nested too deeply", model=model) from None
    try:  # a model's answer is untrusted text too: a NUL or a lone surrogate is no answer
        check(parsed)
    except InvalidInput as exc:
        raise MalformedResponse(f"{model}: unusable JSON: {exc}", model=model) from None
    if not isinstance(parsed, dict):
        raise MalformedResponse(f"{model}: JSON but not an object: {_snippet(data)!r}", model=model)
    return parsed


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def str_or_none(value: Any) -> str | None:
    """``value`` when it is a non-empty string."""
    return value if isinstance(value, str) and value else None


def translate(exc: httpx.HTTPError, model: str) -> ProviderError:
    """The error-tree twin of an httpx transport failure."""
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"{model}: timed out ({type(exc).__name__})", model=model)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        # A base URL without http(s):// or a header we cannot send is configuration, not
        # weather: retrying cannot help.
        return Rejected(f"{model}: cannot send the request: {exc}", model=model)
    if isinstance(exc, httpx.RemoteProtocolError):
        return Unavailable(f"{model}: connection closed mid-response: {exc}", model=model)
    return Unavailable(f"{model}: connection failed: {type(exc).__name__}: {exc}", model=model)


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, model: str, *, now_s: float | None = None
) -> ProviderError:
    """429 → RateLimited, 408/5xx → Unavailable, other statuses → Rejected with the reason."""
    reason = f"{model}: HTTP {status}: {error_text(body)}"
    if status == 429:
        retry_after_s = parse_retry_after(headers, now_s=time.time() if now_s is None else now_s)
        return RateLimited(reason, retry_after_s=retry_after_s, model=model)
    if status == 408 or status >= 500:
        return Unavailable(reason, model=model)
    return Rejected(reason, model=model)


def parse_retry_after(headers: Mapping[str, str], *, now_s: float) -> float:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms", "")
    try:
        if millis and float(millis) >= 0:
            return float(millis) / 1000
    except ValueError:
        pass
    value = headers.get("retry-after", "").strip()
    if not value:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now_s
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_S
    return max(0.0, seconds) if seconds == seconds else DEFAULT_RETRY_AFTER_S  # NaN → default


def error_text(body: str | bytes) -> str:
    """The server's own error message (OpenAI, Anthropic, FastAPI shapes) or the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return _snippet(body)
    message: Any = data
    if isinstance(data, dict):
        error = data.get("error", data)
        message = error.get("message", error) if isinstance(error, dict) else error
        if message is data and "detail" in data:
            message = data["detail"]
    text = message if isinstance(message, str) else json.dumps(message)
    return text[:ERROR_TEXT_CHARS] if text else "(empty body)"


def _snippet(body: str | bytes) -> str:
    """The start of a body as text, for error messages."""
    if isinstance(body, bytes):
        body = body[: ERROR_TEXT_CHARS * 4].decode("utf-8", "replace")
    text = body.strip()
    return text[:ERROR_TEXT_CHARS] if text else "(empty body)"
