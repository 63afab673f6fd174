"""Live cascades in the tier worker: a weak answer climbs a tier; every paid call is kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from router.labels import build_prompt
from router.policy import policy_from_dict
from tierline.client import Client
from workers import execute, routing
from workers.absorber_memory import MemoryAbsorberStore
from workers.db import upgrade
from workers.runtime import Runtime
from workers.schema import attempts, charges, results
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# What each model says, whatever it is asked: the cheap one hedges, the others answer.
ANSWERS = {"sim-nano": "Hmm, hard to say.", "sim-mid": "refund", "sim-frontier": "card_lost"}
BROKEN: set[str] = set()


class _Models(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        model = body["model"]
        if model in BROKEN:
            status, reply = 503, {"error": {"message": "down"}}
        else:
            status, reply = 200, {
                "choices": [{"message": {"role": "assistant", "content": ANSWERS[model]},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 3}}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _run(tmp_path: Path, url: str, prompts: list[str], strategy: dict[str, object]) -> Runtime:
    data = yaml.safe_load((ROOT / "policies" / "demo.yaml").read_text())
    data["strategy"] = strategy
    data["classifier"]["band_tiers"] = {"low": "t0", "mid": "t0", "high": "t0"}
    db = f"sqlite:///{tmp_path / 'cascade.sqlite'}"
    upgrade(db)
    rt = Runtime(Settings("memory://", db, ROOT / "policies/demo.yaml"), policy_from_dict(data),
                 {"TIERLINE_SIM_URL": url})
    rt.__dict__["absorber"] = MemoryAbsorberStore()
    client = Client(rt)
    client._enqueue = lambda valid, new: True  # type: ignore[method-assign]
    ids = client.submit_many(prompts, lane="batch").request_ids
    routing.route(rt, ids, lambda bundle, _t, _l: execute.execute(rt, bundle))
    return rt


def _rows(rt: Runtime) -> tuple[list[tuple[str, str]], list[tuple[str, bool]], int]:
    with rt.engine.connect() as conn:
        ended = conn.execute(select(results.c.model, results.c.content)).all()
        tried = conn.execute(select(attempts.c.model, attempts.c.ok)
                             .order_by(attempts.c.seq)).all()
        paid = len(conn.execute(select(charges.c.attempt_id)).all())
    return [tuple(r) for r in ended], [tuple(a) for a in tried], paid  # type: ignore[misc]


LABELS = ["refund", "card_lost", "transfer"]


def test_a_hedging_answer_escalates_to_the_next_tier(tmp_path: Path, models_url: str) -> None:
    rt = _run(tmp_path, models_url, [build_prompt("where is my money", LABELS)],
              {"kind": "cascade", "confidence_bar": 0.7})
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-mid", "refund")]
    assert tried == [("sim-nano", True), ("sim-mid", True)]  # the climb, both paid
    assert paid == 2


def test_without_a_cascade_the_first_answer_stands(tmp_path: Path, models_url: str) -> None:
    rt = _run(tmp_path, models_url, [build_prompt("where is my money", LABELS)],
              {"kind": "single"})
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-nano", "Hmm, hard to say.")] and paid == 1


def test_free_text_that_cannot_be_judged_is_not_escalated(tmp_path: Path, models_url: str
                                                           ) -> None:
    rt = _run(tmp_path, models_url, ["write me a haiku about autumn"],
              {"kind": "cascade", "confidence_bar": 0.7})
    ended, tried, _ = _rows(rt)
    assert [m for m, _ in tried] == ["sim-nano"]


def test_when_the_tier_above_is_down_the_best_answer_so_far_is_kept(
        tmp_path: Path, models_url: str) -> None:
    BROKEN.add("sim-mid")
    try:
        rt = _run(tmp_path, models_url, [build_prompt("where is my money", LABELS)],
                  {"kind": "cascade", "confidence_bar": 0.7})
    finally:
        BROKEN.clear()
    ended, tried, paid = _rows(rt)
    assert ended == [("sim-nano", "Hmm, hard to say.")]
    assert tried == [("sim-nano", True), ("sim-mid", False)] and paid == 1
