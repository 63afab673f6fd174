"""OpenAI's Files and Batch APIs: ``/v1/files`` and ``/v1/batches`` (the logic is in
:mod:`tierline.producer.files`, :mod:`tierline.producer.batches` and
:mod:`tierline.producer.batch_intake`)."""

from __future__ import annotations

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tierline.gateway import body
from tierline.gateway.context import Gateway, json_response, owner_of
from tierline.gateway.errors import bad
from tierline.producer.files import ORDERS, OUTPUT_PURPOSE, Download, Upload

DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 20, 100  # batches, as OpenAI pages them
DEFAULT_FILES_LIMIT = MAX_FILES_LIMIT = 10_000  # files, likewise
MAX_FORM_FIELDS = 16


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.scope["gateway"]
    return gateway


async def upload(request: Request) -> Response:
    gateway = _gateway(request)
    kind = request.headers.get("content-type", "")
    if not kind.lower().startswith("multipart/form-data") or "boundary=" not in kind:
        raise bad("upload the file as multipart/form-data with fields \"purpose\" and \"file\"",
                  "invalid_content_type")
    limits = gateway.limits
    parser = MultiPartParser(request.headers,
                             body.chunks(request, limits.upload_bytes, limits.read_timeout_s),
                             max_files=1, max_fields=MAX_FORM_FIELDS)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise bad(f"the multipart body is malformed: {exc.message}", "invalid_form") from None
    try:
        purpose, file = form.get("purpose"), form.get("file")
        content = await file.read() if isinstance(file, UploadFile) else None
        filename = file.filename if isinstance(file, UploadFile) else None
    finally:
        await form.close()
    fields = Upload(purpose if isinstance(purpose, str) else None, filename, content)
    return json_response(await run_in_threadpool(
        gateway.batches.files.upload, owner_of(request), fields))


async def list_files(request: Request) -> Response:
    query = request.query_params
    limit, after = _page(request, DEFAULT_FILES_LIMIT, MAX_FILES_LIMIT)
    purpose = query.get("purpose")
    if purpose == OUTPUT_PURPOSE:
        raise bad("purpose: batch_output files are not listed (they are written from a "
                  "batch's results when read); each batch names its own in output_file_id and "
                  "error_file_id", "invalid_purpose")
    order = query.get("order") or "desc"
    if order not in ORDERS:
        raise bad(f"order: must be \"asc\" or \"desc\", got {order!r}", "invalid_order")
    return json_response(await run_in_threadpool(
        _gateway(request).batches.files.list, owner_of(request), purpose=purpose, limit=limit,
        after=after, order=order))


async def retrieve_file(request: Request) -> Response:
    return json_response(await run_in_threadpool(
        _gateway(request).batches.file, owner_of(request), request.path_params["file_id"]))


async def delete_file(request: Request) -> Response:
    return json_response(await run_in_threadpool(
        _gateway(request).batches.delete_file, owner_of(request),
        request.path_params["file_id"]))


async def file_content(request: Request) -> Response:
    download: Download = await run_in_threadpool(
        _gateway(request).batches.content, owner_of(request), request.path_params["file_id"])
    headers = {} if download.length is None else {"Content-Length": str(download.length)}
    return StreamingResponse(iterate_in_threadpool(iter(download.chunks)),
                             media_type=download.kind, headers=headers)


async def create_batch(request: Request) -> Response:
    gateway = _gateway(request)
    data = await body.read(request, gateway.limits.body_bytes, gateway.limits.read_timeout_s)
    return json_response(await run_in_threadpool(
        gateway.batches.create, owner_of(request), body.parse_json(data)))


async def list_batches(request: Request) -> Response:
    limit, after = _page(request, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    return json_response(await run_in_threadpool(
        _gateway(request).batches.list, owner_of(request), limit, after))


async def retrieve_batch(request: Request) -> Response:
    return json_response(await run_in_threadpool(
        _gateway(request).batches.retrieve, owner_of(request),
        request.path_params["batch_id"]))


async def cancel_batch(request: Request) -> Response:
    return json_response(await run_in_threadpool(
        _gateway(request).batches.cancel, owner_of(request), request.path_params["batch_id"]))


def _page(request: Request, default: int, maximum: int) -> tuple[int, str | None]:
    """A list call's ``limit`` (1 to ``maximum``) and ``after``."""
    limit = request.query_params.get("limit") or str(default)
    if not limit.isdigit() or not 1 <= int(limit) <= maximum:
        raise bad(f"limit: must be a whole number from 1 to {maximum}, got {limit!r}",
                  "invalid_limit")
    return int(limit), request.query_params.get("after")
