"""The OpenAI-compatible gateway over real HTTP, on the embedded stack: answers, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import func, select

from tests.conftest import ROOT, serve_gateway
from tierline.config.settings import POLICY_DIR
from tierline.gateway.keys_file import digest, load_keys
from tierline.producer.client import Client
from tierline.producer.embedded import embedded
from tierline.record.schema import charges
from tierline.router.errors import InvalidInput

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """The embedded stack in this process (it puts back the process-wide state it sets)."""
    database = tmp_path_factory.mktemp("gateway") / "t.sqlite"
    with embedded(POLICY_DIR / "demo.yaml", database=database) as rt:
        yield Client(rt)


@contextmanager
def _serve(client: Client, **options: Any) -> Iterator[httpx.Client]:
    with serve_gateway(client, **options) as base, \
            httpx.Client(base_url=base.removesuffix("/v1"), timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def http(stack: Client) -> Iterator[httpx.Client]:
    with _serve(stack) as client:
        yield client


def test_a_chat_completion_is_answered_in_openai_shape_and_charged(
        http: httpx.Client, stack: Client) -> None:
    response = http.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] in stack.rt.policy.models
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    ours = body["tierline"]
    assert ours["lane"] == "realtime"
    assert ours["tier"] == stack.rt.policy.tier_of(body["model"])
    with stack.rt.engine.connect() as conn:
        charged = conn.execute(select(func.sum(charges.c.usd))
                               .where(charges.c.request_id == ours["request_id"])).scalar_one()
    assert Decimal(ours["usd"]) == charged > 0


def test_a_repeated_idempotency_key_returns_the_same_request(http: httpx.Client) -> None:
    headers = {"Idempotency-Key": "gateway-repeat", "X-Tierline-Lane": "standard"}
    first = http.post("/v1/chat/completions", json=HELLO, headers=headers).json()
    again = http.post("/v1/chat/completions", json=HELLO, headers=headers).json()
    assert again["tierline"] == first["tierline"]
    assert again["choices"] == first["choices"]
    assert first["tierline"]["lane"] == "standard"


@pytest.mark.parametrize(("body", "headers", "status", "says"), [
    (b"{not json", {}, 400, "not valid JSON"),
    (b"[1, 2]", {}, 400, "must be a JSON object"),
    (b'{"model": "auto"}', {}, 400, "messages: must be a non-empty list"),
    (b'{"messages": []}', {}, 400, "messages: must be a non-empty list"),
    (b'{"messages": [{"role": "user"}]}', {}, 400, "messages[0]"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', {}, 400,
     "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', {"X-Tierline-Lane": "urgent"}, 400,
     "use one of realtime, standard, batch"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', {}, 400,
     "stream: must be true or false"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": 1}',
     {}, 400, "stream_options: must be an object"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream_options": {}}', {}, 400,
     "only allowed with"),
    (b'{"messages": [{"role": "user", "content": "' + b"x" * (1 << 20) + b'"}]}', {}, 413,
     "the limit is 1048576"),
])
def test_bad_input_gets_a_clear_openai_error(http: httpx.Client, body: bytes,
                                             headers: dict[str, str], status: int,
                                             says: str) -> None:
    response = http.post("/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"]
    assert error["type"] and error["code"]


def test_a_streamed_completion_comes_as_openai_chunks(http: httpx.Client, stack: Client) -> None:
    response = http.post("/v1/chat/completions", json=HELLO | {
        "stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    lines = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    *pieces, last, usage = events
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert len({e["id"] for e in events}) == 1
    # demo.yaml is kind: single, so the tier worker relays the answer as it is generated
    assert len(pieces) > 1
    assert pieces[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(p["choices"][0]["finish_reason"] is None for p in pieces)
    text = "".join(p["choices"][0]["delta"]["content"] for p in pieces)
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert last["tierline"]["lane"] == "realtime"
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
    row = next(iter(stack.results(last["tierline"]["job_id"])))
    assert text == row["content"] and {e["model"] for e in events} == {row["model"]}


def test_the_openai_sdk_talks_to_the_gateway(http: httpx.Client) -> None:
    sdk = openai.OpenAI(base_url=f"{http.base_url}/v1", api_key="unused", max_retries=0)
    whole = sdk.chat.completions.create(model="auto", messages=HELLO["messages"])
    assert whole.choices[0].message.content.strip()
    assert whole.model in [m.id for m in sdk.models.list().data]
    events = list(sdk.chat.completions.create(model="auto", messages=HELLO["messages"],
                                              stream=True))
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text.strip() and events[-1].choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError, match="messages"):
        sdk.chat.completions.create(model="auto", messages=[])


def test_unknown_paths_and_wrong_methods(http: httpx.Client) -> None:
    assert http.get("/v1/nothing").status_code == 404
    assert http.post("/v1/embeddings", json={}).status_code == 404
    wrong = http.get("/v1/chat/completions")
    assert wrong.status_code == 405 and "takes POST" in wrong.json()["error"]["message"]
    assert http.delete("/v1/models").status_code == 405
    assert http.get("/healthz").json() == {"ok": True}


def test_models_lists_the_policy_models(http: httpx.Client, stack: Client) -> None:
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == list(stack.rt.policy.models)


def test_an_answer_not_ready_in_time_is_504_and_the_request_is_kept(stack: Client) -> None:
    late = {"Idempotency-Key": "gateway-late"}
    with _serve(stack, max_wait_s=0.0) as impatient:
        response = impatient.post("/v1/chat/completions", json=HELLO, headers=late)
    assert response.status_code == 504
    message = response.json()["error"]["message"]
    request_id = message.split()[1]
    assert "will be answered" in message
    with _serve(stack) as patient:
        answer = patient.post("/v1/chat/completions", json=HELLO, headers=late)
    assert answer.status_code == 200
    assert answer.json()["tierline"]["request_id"] == request_id


def test_with_keys_each_key_speaks_for_its_tenant_and_others_get_401(
        stack: Client, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(f"acme: [sk-acme-0001]\nglobex: ['sha256:{digest('sk-globex-0001')}']\n")
    acme = {"Authorization": "Bearer sk-acme-0001", "Idempotency-Key": "gateway-shared"}
    globex = {"Authorization": "Bearer sk-globex-0001", "Idempotency-Key": "gateway-shared"}
    with _serve(stack, keys=load_keys(keys_file)) as http:
        for headers, says in (({}, "no API key"), ({"Authorization": "Bearer sk-nope-0001"},
                                                   "a wrong API key"),
                              ({"Authorization": "sk-acme-0001"}, "a wrong API key")):
            refused = http.post("/v1/chat/completions", json=HELLO, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
            assert says in refused.json()["error"]["message"]
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/models", headers=acme).status_code == 200
        assert http.get("/healthz").status_code == 200
        first = http.post("/v1/chat/completions", json=HELLO, headers=acme).json()["tierline"]
        again = http.post("/v1/chat/completions", json=HELLO, headers=acme).json()["tierline"]
        other = http.post("/v1/chat/completions", json=HELLO, headers=globex).json()["tierline"]
    assert again["request_id"] == first["request_id"] != other["request_id"]
    with stack.rt.engine.connect() as conn:  # each tenant is charged for its own request
        for tierline, tenant in ((first, "acme"), (other, "globex")):
            assert set(conn.execute(select(charges.c.tenant).where(
                charges.c.request_id == tierline["request_id"])).scalars()) == {tenant}


@pytest.mark.parametrize(("text", "says"), [
    ("acme: [", "not valid YAML"),
    ("[sk-acme-0001]", "must map each tenant to a list of keys"),
    ("acme: sk-acme-0001", "give a non-empty list of keys"),
    ("acme: [short]", "at least 8 characters"),
    ("acme: [sk-same-0001]\nglobex: [sk-same-0001]", "listed for tenants 'acme' and 'globex'"),
])
def test_a_bad_keys_file_gets_a_clear_error(tmp_path: Path, text: str, says: str) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(text)
    with pytest.raises(InvalidInput, match=re.escape(says)) as refused:
        load_keys(keys_file)
    assert str(keys_file) in str(refused.value)


def test_the_gateway_command_stops_on_a_missing_keys_file(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tierline", "gateway", "--port", "0", "--keys",
                           str(tmp_path / "absent.yaml")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert "cannot read the keys file" in done.stderr and "Traceback" not in done.stderr


def test_the_gateway_command_serves_on_the_embedded_stack_until_stopped(tmp_path: Path) -> None:
    # SIGTERM, as `docker stop` sends: Ctrl-C's SIGINT is ignored by a process started in
    # the background of a non-interactive shell, which a CI runner may be
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIERLINE_BROKER_URL", "TIERLINE_DATABASE_URL")}
    env.update(TIERLINE_POLICY=str(POLICY_DIR / "demo.yaml"), PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT))  # this tree, not whichever one is installed
    process = subprocess.Popen([sys.executable, "-m", "tierline", "gateway", "--port", "0"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("tierline gateway on http://127.0.0.1:"), line
        url = line.split()[3]
        answer = httpx.post(f"{url}/chat/completions", json=HELLO, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert (tmp_path / "tierline.sqlite").exists()


def test_the_embedded_stack_puts_back_the_process_state_it_set(tmp_path: Path) -> None:
    from tierline.workers.app import app
    from tierline.workers.runtime import install, runtime

    before = (os.environ.get("TIERLINE_BROKER_URL"), app.conf.broker_url)
    previous = install(None)
    try:
        with embedded(POLICY_DIR / "demo.yaml", database=tmp_path / "t.sqlite") as rt:
            assert runtime() is rt
        assert (os.environ.get("TIERLINE_BROKER_URL"), app.conf.broker_url) == before
        assert install(None) is None  # nothing left installed
    finally:
        install(previous)


def test_a_repeated_streamed_request_streams_the_same_answer(http: httpx.Client) -> None:
    def text_of(response: httpx.Response) -> str:
        assert response.status_code == 200, response.text
        events = [json.loads(line.removeprefix("data: ")) for line in response.text.split("\n")
                  if line.startswith("data: {")]
        return "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                       if e.get("choices"))

    body = HELLO | {"stream": True}
    first = text_of(http.post("/v1/chat/completions", json=body,
                              headers={"Idempotency-Key": "streamed-twice"}))
    again = text_of(http.post("/v1/chat/completions", json=body,
                              headers={"Idempotency-Key": "streamed-twice"}))
    assert first.strip() and again == first
