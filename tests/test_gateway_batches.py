"""OpenAI's Files and Batch APIs on the gateway, over real HTTP on the embedded stack, with
the official ``openai`` SDK as the client."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import delete, select

from tests.conftest import broker_down, serve_gateway
from tierline.config.settings import POLICY_DIR
from tierline.gateway import DEFAULT_LIMITS
from tierline.gateway.keys_file import load_keys
from tierline.producer.batch_intake import ingest
from tierline.producer.batches import Batches
from tierline.producer.client import Client, Publish, publish_to_router
from tierline.producer.embedded import embedded
from tierline.producer.files import Upload
from tierline.record.schema import batches, files, requests
from tierline.schedules.sweeper import enqueue_stranded, fail_stalled_intakes, restart_batch_intakes


def _line(custom_id: str, question: str, **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "auto", "messages": [{"role": "user", "content": question}],
                     "max_tokens": 64}} | extra


def _jsonl(lines: list[Any]) -> bytes:
    return b"".join((json.dumps(x) if not isinstance(x, bytes) else x.decode()).encode()
                    + b"\n" for x in lines)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    database = tmp_path_factory.mktemp("batches") / "t.sqlite"
    with embedded(POLICY_DIR / "demo.yaml", database=database) as rt:
        yield Client(rt)


_serve = serve_gateway


@pytest.fixture(scope="module")
def url(stack: Client) -> Iterator[str]:
    with _serve(stack) as base:
        yield base


def _sdk(base: str, key: str = "unused") -> Any:
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0)


def _finished(sdk: Any, batch_id: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.2)


def _read(sdk: Any, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in sdk.files.content(file_id).text.splitlines()]


def test_a_batch_runs_end_to_end_and_every_custom_id_is_answered_once(url: str) -> None:
    sdk = _sdk(url)
    good = [_line(f"q-{n}", f"What is {n} + {n}?") for n in range(40)]
    bad = [b"{not json", _line("q-wrong-url", "hi", url="/v1/embeddings"),
           _line("q-0", "a repeated custom_id")]
    content = _jsonl(good[:20] + bad + good[20:])
    uploaded = sdk.files.create(file=("questions.jsonl", content), purpose="batch")
    assert (uploaded.purpose, uploaded.bytes, uploaded.filename) == (
        "batch", len(content), "questions.jsonl")
    assert sdk.files.retrieve(uploaded.id).bytes == len(content)
    assert sdk.files.content(uploaded.id).content == content

    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                               completion_window="24h", metadata={"run": "nightly"})
    assert batch.id.startswith("batch_") and batch.metadata == {"run": "nightly"}
    # answered before the file is read: nothing counted, nothing refused yet
    assert batch.status == "validating" and batch.request_counts.total == 0
    assert batch.errors is None and batch.in_progress_at is None
    done = _finished(sdk, batch.id)
    assert done.status == "completed" and done.completed_at
    assert done.created_at <= done.in_progress_at <= done.completed_at
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (43, 40, 3)
    assert [(e.line, e.param) for e in done.errors.data] == [
        (21, None), (22, "q-wrong-url"), (23, "q-0")]
    assert sdk.batches.list(limit=5).data[0].id == batch.id

    output = _read(sdk, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == sorted(x["custom_id"] for x in good)
    for line in output:
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["usage"]["total_tokens"] > 0 and body["tierline"]["lane"] == "batch"
    errors = _read(sdk, done.error_file_id)
    messages = [line["response"]["body"]["error"]["message"] for line in errors]
    assert [line["custom_id"] for line in errors] == [None, "q-wrong-url", "q-0"]
    assert "line 21: malformed JSON" in messages[0]
    assert "url: must be '/v1/chat/completions'" in messages[1]
    assert "custom_id 'q-0' is repeated (first on line 1)" in messages[2]
    assert sdk.files.retrieve(done.output_file_id).purpose == "batch_output"


class _IntakeNotPublished(Batches):
    """The broker is unreachable when the batch is created: it waits, ``validating``."""

    def _publish(self, job_id: str) -> bool:
        return False


class Crash(Exception):
    """The intake's worker dies in the middle of the file."""


def _crashing_at_second_chunk() -> Publish:
    """Dies after writing its second chunk of requests, before handing it to the broker."""
    chunks: list[list[str]] = []

    def publish(lane: str, request_ids: list[str], *, retry: bool) -> None:
        chunks.append(request_ids)
        if len(chunks) == 2:
            raise Crash
        publish_to_router(lane, request_ids, retry=retry)

    return publish


def _unread(client: Client, lines: list[Any], tenant: str = "default") -> str:
    """A batch created while the broker was down: its job id (its file not read yet)."""
    uploaded = Batches(client).files.upload(tenant, Upload("batch", "u.jsonl", _jsonl(lines)))
    created = _IntakeNotPublished(client).create(tenant, {
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    assert created["status"] == "validating"
    return str(created["id"]).removeprefix("batch_")


def _requests_of(client: Client, job_id: str) -> list[str]:
    with client.rt.engine.connect() as conn:
        return list(conn.execute(select(requests.c.idempotency_key)
                                 .where(requests.c.job_id == job_id)).scalars())


def test_a_cancelled_batch_keeps_its_answers_and_reports_the_rest(stack: Client) -> None:
    with _serve(stack) as base:
        sdk = _sdk(base)
        uploaded = sdk.files.create(file=("a.jsonl", _jsonl([_line("early", "hi")])),
                                    purpose="batch")
        early = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")
        assert _finished(sdk, early.id).status == "completed"
        assert sdk.batches.cancel(early.id).status == "completed"  # nothing left to cancel

        job = _unread(stack, [_line(f"c-{n}", f"Name a colour, {n}.") for n in range(5)])
        # the broker is unreachable: read, but none reached a worker (they wait for the sweeper)
        assert ingest(Client(stack.rt, publish=broker_down), job) == 5
        batch = sdk.batches.retrieve(f"batch_{job}")
        assert batch.status == "in_progress" and batch.output_file_id is None
        cancelled = sdk.batches.cancel(batch.id)
        assert cancelled.status == "cancelled" and cancelled.cancelled_at
        assert (cancelled.request_counts.completed, cancelled.request_counts.failed) == (0, 5)
        assert cancelled.output_file_id is None
        errors = _read(sdk, cancelled.error_file_id)
    assert [e["custom_id"] for e in errors] == [f"c-{n}" for n in range(5)]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}


def test_an_intake_that_crashed_is_run_again_by_the_sweeper_and_writes_each_line_once(
        stack: Client) -> None:
    lines = [_line(f"k-{n}", f"What is {n} times 2?") for n in range(150)] + [b"{bad"]
    job = _unread(stack, lines)
    with pytest.raises(Crash):
        ingest(Client(stack.rt, publish=_crashing_at_second_chunk()), job)
    # two chunks of 64 written (the second never handed to a worker), the rest unread
    assert len(_requests_of(stack, job)) == 128 and stack.status(job).state == "validating"
    # a batch's intake is restarted, never failed as a lost producer's stream would be
    assert job not in fail_stalled_intakes(stack.rt, stalled_after_s=0.0)
    assert restart_batch_intakes(stack.rt, min_age_s=0.0, stalled_after_s=0.0) == [job]
    assert restart_batch_intakes(stack.rt, min_age_s=0.0) == []  # handed over: not twice
    with _serve(stack) as base:
        sdk = _sdk(base)
        deadline = time.monotonic() + 30
        while stack.status(job).state == "validating":  # a worker reads the rest
            assert time.monotonic() < deadline
            time.sleep(0.05)
        enqueue_stranded(stack.rt, min_age_s=0.0)  # the sweep hands over the 64 stranded
        done = _finished(sdk, f"batch_{job}")
        assert done.status == "completed"
        assert (done.request_counts.total, done.request_counts.completed,
                done.request_counts.failed) == (151, 150, 1)
        output = _read(sdk, done.output_file_id)
    keys = _requests_of(stack, job)
    assert len(keys) == len(set(keys)) == 150
    assert sorted(line["custom_id"] for line in output) == sorted(f"k-{n}" for n in range(150))
    assert ingest(stack, job) == 0  # read already: a late redelivery changes nothing
    assert len(_requests_of(stack, job)) == 150


def _cancelling(stack: Client, job_id: str) -> Publish:
    """Cancels the batch once the intake's first chunk has been written."""
    cancelled: list[bool] = []

    def publish(lane: str, request_ids: list[str], *, retry: bool) -> None:
        if not cancelled:
            stack.cancel(job_id)
            cancelled.append(True)
        publish_to_router(lane, request_ids, retry=retry)

    return publish


def test_a_batch_cancelled_while_it_is_read_stops_being_read(url: str, stack: Client) -> None:
    job = _unread(stack, [_line(f"m-{n}", f"Say {n}.") for n in range(150)])
    reader = Client(stack.rt, publish=_cancelling(stack, job))
    assert ingest(reader, job) == 64  # the chunk written when the cancel came; no more
    cancelled = _sdk(url).batches.retrieve(f"batch_{job}")
    assert cancelled.status == "cancelled" and cancelled.request_counts.total == 64
    assert stack.status(job).by_status == {"cancelled": 64}
    assert ingest(stack, job) == 0 and len(_requests_of(stack, job)) == 64


def test_a_batch_cancelled_before_it_is_read_is_never_read(url: str, stack: Client) -> None:
    job = _unread(stack, [_line("never", "hi")])
    sdk = _sdk(url)
    cancelled = sdk.batches.cancel(f"batch_{job}")
    assert cancelled.status == "cancelled" and cancelled.request_counts.total == 0
    assert ingest(stack, job) == 0 and _requests_of(stack, job) == []
    assert restart_batch_intakes(stack.rt, min_age_s=0.0) == []


def test_the_input_of_a_batch_being_read_cannot_be_deleted(url: str, stack: Client) -> None:
    sdk = _sdk(url)
    job = _unread(stack, [_line("held", "hi")])
    file_id = sdk.batches.retrieve(f"batch_{job}").input_file_id
    with pytest.raises(openai.ConflictError, match="still reading it"):
        sdk.files.delete(file_id)
    assert sdk.files.retrieve(file_id).id == file_id  # nothing lost
    assert ingest(stack, job) == 1
    assert sdk.files.delete(file_id).deleted  # read: the batch goes on without it
    assert _finished(sdk, f"batch_{job}").status == "completed"


def test_a_batch_whose_file_vanished_before_it_was_read_fails_and_says_why(
        url: str, stack: Client) -> None:
    job = _unread(stack, [_line("gone", "hi")])
    with stack.rt.engine.begin() as conn:  # as if deleted in the instant before the batch
        conn.execute(delete(files).where(files.c.id == select(batches.c.input_file_id).where(
            batches.c.job_id == job).scalar_subquery()))
    assert ingest(stack, job) == 0
    failed = _sdk(url).batches.retrieve(f"batch_{job}")
    assert failed.status == "failed" and failed.failed_at
    assert "was deleted before it was read" in failed.errors.data[-1].message


@pytest.mark.parametrize(("purpose", "content", "says"), [
    ("fine-tune", _jsonl([_line("a", "hi")]), "purpose: must be \"batch\""),
    ("batch", b"", "the file is empty"),
    ("batch", b"\n  \n", "the file is empty"),
    ("batch", b"id,question\n1,what\n", "not JSONL, no line is a JSON object (line 1: malformed"),
])
def test_a_bad_upload_gets_a_400_naming_the_fault(url: str, purpose: str, content: bytes,
                                                  says: str) -> None:
    with pytest.raises(openai.BadRequestError, match=re.escape(says)):
        _sdk(url).files.create(file=("x.jsonl", content), purpose=purpose)  # type: ignore[arg-type]


def test_uploads_have_their_own_body_limit(url: str, stack: Client) -> None:
    big = _jsonl([_line("big", "x" * (2 << 20))])  # over the chat limit of 1 MiB
    assert _sdk(url).files.create(file=("big.jsonl", big), purpose="batch").bytes == len(big)
    no_file = httpx.post(f"{url}/files", data={"purpose": "batch"}, files={"other": b"x"})
    assert no_file.status_code == 400 and "file: missing" in no_file.text
    not_form = httpx.post(f"{url}/files", json={"purpose": "batch"})
    assert not_form.status_code == 400 and "multipart/form-data" in not_form.text
    small = dataclasses.replace(DEFAULT_LIMITS, upload_bytes=1000)
    with _serve(stack, limits=small) as tight:
        refused = httpx.post(f"{tight}/files", data={"purpose": "batch"},
                             files={"file": ("x.jsonl", b"{}\n" * 500)})
    assert refused.status_code == 413 and "the limit is 1000" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("change", "status", "says"), [
    ({"input_file_id": "file-nope"}, 404, "no file 'file-nope'"),
    ({"input_file_id": None}, 400, "input_file_id: missing"),
    ({"input_file_id": "file-out-123"}, 400, "is a batch's output"),
    ({"endpoint": "/v1/embeddings"}, 400, "endpoint: only '/v1/chat/completions'"),
    ({"completion_window": "48h"}, 400, "completion_window: only '24h'"),
    ({"metadata": ["x"]}, 400, "metadata: must be an object"),
])
def test_a_bad_batch_gets_an_openai_error_naming_the_fault(url: str, change: dict[str, Any],
                                                           status: int, says: str) -> None:
    sdk = _sdk(url)
    uploaded = sdk.files.create(file=("x.jsonl", _jsonl([_line("a", "hi")])), purpose="batch")
    body = {"input_file_id": uploaded.id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"} | change
    response = httpx.post(f"{url}/batches", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"] and error["type"] and error["code"]


def test_unknown_batches_and_files_are_404(url: str) -> None:
    sdk = _sdk(url)
    with pytest.raises(openai.NotFoundError, match="no batch"):
        sdk.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError, match="no batch"):
        sdk.batches.cancel("batch_nope")
    with pytest.raises(openai.NotFoundError, match="no file"):
        sdk.files.content("file-out-nope")
    assert httpx.get(f"{url}/batches?limit=0").status_code == 400
    assert httpx.delete(f"{url}/batches/batch_x").status_code == 405


def test_files_and_batches_belong_to_their_tenant(stack: Client, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("acme: [sk-acme-0001]\nglobex: [sk-globex-0001]\n")
    with _serve(stack, keys=load_keys(keys)) as base:
        acme, globex = _sdk(base, "sk-acme-0001"), _sdk(base, "sk-globex-0001")
        uploaded = acme.files.create(file=("t.jsonl", _jsonl([_line("t", "hi")])),
                                     purpose="batch")
        first, second = (acme.batches.create(input_file_id=uploaded.id,
                                             endpoint="/v1/chat/completions",
                                             completion_window="24h") for _ in range(2))
        done = _finished(acme, first.id)
        calls = [lambda: globex.files.retrieve(uploaded.id),
                 lambda: globex.files.content(uploaded.id),
                 lambda: globex.files.content(done.output_file_id),
                 lambda: globex.batches.retrieve(first.id),
                 lambda: globex.batches.cancel(first.id),
                 lambda: globex.batches.create(input_file_id=uploaded.id,
                                               endpoint="/v1/chat/completions",
                                               completion_window="24h")]
        for call in calls:
            with pytest.raises(openai.NotFoundError):
                call()
        assert globex.batches.list().data == []
        page = acme.batches.list(limit=1)
        assert [b.id for b in page.data] == [second.id] and page.has_more
        assert [b.id for b in acme.batches.list(limit=1)][:2] == [second.id, first.id]
        assert [line["custom_id"] for line in _read(acme, done.output_file_id)] == ["t"]
        with pytest.raises(openai.AuthenticationError):
            _sdk(base, "sk-nobody-0001").batches.list()


def test_a_batch_with_no_valid_line_fails_and_says_why(url: str) -> None:
    sdk = _sdk(url)
    lines = [{"custom_id": "no-url", "body": {"messages": []}},
             _line("no-messages", "hi") | {"body": {"messages": []}}]
    uploaded = sdk.files.create(file=("bad.jsonl", _jsonl(lines)), purpose="batch")
    batch = _finished(sdk, sdk.batches.create(input_file_id=uploaded.id,
                                              endpoint="/v1/chat/completions",
                                              completion_window="24h").id)
    assert batch.status == "failed" and batch.failed_at and batch.output_file_id is None
    assert batch.in_progress_at is None
    reasons = [e.message for e in batch.errors.data]
    assert "url: must be" in reasons[0] and "body: messages: must be" in reasons[1]
    assert "all 2 were rejected" in reasons[2]
    assert [e["custom_id"] for e in _read(sdk, batch.error_file_id)] == ["no-url", "no-messages"]


def _tenants(tmp_path: Path, *names: str) -> Any:
    keys = tmp_path / "keys.yaml"
    keys.write_text("".join(f"{name}: [sk-{name}-0001]\n" for name in names))
    return load_keys(keys)


def test_files_are_listed_newest_first_in_pages_per_tenant(stack: Client,
                                                              tmp_path: Path) -> None:
    with _serve(stack, keys=_tenants(tmp_path, "lister", "other")) as base:
        sdk, other = _sdk(base, "sk-lister-0001"), _sdk(base, "sk-other-0001")
        a, b, c = (sdk.files.create(file=(f"{name}.jsonl", _jsonl([_line(name, "hi")])),
                                    purpose="batch") for name in "abc")
        theirs = other.files.create(file=("x.jsonl", _jsonl([_line("x", "hi")])),
                                    purpose="batch")
        page = sdk.files.list()
        assert [f.id for f in page.data] == [c.id, b.id, a.id] and not page.has_more
        assert page.data[0].filename == "c.jsonl" and page.data[0].bytes == c.bytes
        assert [f.id for f in sdk.files.list(order="asc")] == [a.id, b.id, c.id]
        first = sdk.files.list(limit=2)
        assert [f.id for f in first.data] == [c.id, b.id] and first.has_more
        assert [f.id for f in sdk.files.list(limit=1)] == [c.id, b.id, a.id]  # every page
        assert [f.id for f in sdk.files.list(after=b.id, order="asc")] == [c.id]
        assert [f.id for f in sdk.files.list(purpose="batch")] == [c.id, b.id, a.id]
        assert sdk.files.list(purpose="fine-tune").data == []
        assert [f.id for f in other.files.list()] == [theirs.id]
        with pytest.raises(openai.BadRequestError, match="after: no file"):
            sdk.files.list(after=theirs.id)  # another tenant's file is no cursor


@pytest.mark.parametrize(("query", "says"), [
    ("limit=0", "limit: must be a whole number from 1 to 10000, got '0'"),
    ("limit=10001", "limit: must be a whole number from 1 to 10000"),
    ("limit=ten", "limit: must be a whole number"),
    ("order=newest", "order: must be \"asc\" or \"desc\", got 'newest'"),
    ("purpose=batch_output", "batch_output files are not listed"),
    ("after=file-nope", "after: no file 'file-nope'"),
])
def test_a_bad_file_list_query_gets_a_400_naming_the_parameter(url: str, query: str,
                                                               says: str) -> None:
    response = httpx.get(f"{url}/files?{query}")
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]["message"]


def test_a_deleted_file_is_gone_and_only_its_tenant_may_delete_it(stack: Client,
                                                                   tmp_path: Path) -> None:
    with _serve(stack, keys=_tenants(tmp_path, "owner", "intruder")) as base:
        sdk, intruder = _sdk(base, "sk-owner-0001"), _sdk(base, "sk-intruder-0001")
        uploaded = sdk.files.create(file=("d.jsonl", _jsonl([_line("d", "hi")])),
                                    purpose="batch")
        batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")
        done = _finished(sdk, batch.id)
        with pytest.raises(openai.NotFoundError, match="no file"):
            intruder.files.delete(uploaded.id)
        with pytest.raises(openai.NotFoundError, match="no file"):
            intruder.files.delete(done.output_file_id)
        with pytest.raises(openai.BadRequestError, match="is not stored: it is written from"):
            sdk.files.delete(done.output_file_id)
        assert sdk.files.retrieve(uploaded.id).id == uploaded.id  # the intruder changed nothing

        deleted = sdk.files.delete(uploaded.id)
        assert (deleted.id, deleted.object, deleted.deleted) == (uploaded.id, "file", True)
        for call in (sdk.files.retrieve, sdk.files.content, sdk.files.delete):
            with pytest.raises(openai.NotFoundError, match="no file"):
                call(uploaded.id)
        assert uploaded.id not in [f.id for f in sdk.files.list()]
        # the batch had read it: it and its output stay
        assert sdk.batches.retrieve(batch.id).input_file_id == uploaded.id
        assert [line["custom_id"] for line in _read(sdk, done.output_file_id)] == ["d"]
        with pytest.raises(openai.NotFoundError, match="no file 'file-nope'"):
            sdk.files.delete("file-nope")


def test_each_files_path_answers_405_for_a_method_it_does_not_take(url: str) -> None:
    for method, path, takes in [("DELETE", "/files", "GET, POST"),
                                ("PUT", "/files/file-x", "GET, DELETE"),
                                ("DELETE", "/files/file-x/content", "GET"),
                                ("DELETE", "/batches", "GET, POST")]:
        response = httpx.request(method, f"{url}{path}")
        assert response.status_code == 405, (method, path)
        assert f"takes {takes}, not {method}" in response.json()["error"]["message"]
    assert httpx.delete(f"{url}/nowhere").status_code == 404
