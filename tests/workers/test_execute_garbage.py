"""A provider answering garbage: a clear failed attempt with its reason, never a crash."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from tests.conftest import publish_nowhere
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.db import upgrade
from tierline.record.schema import attempts, results
from tierline.router.policy import policy_from_dict
from tierline.workers import routing
from tierline.workers.engine import execute
from tierline.workers.runtime import Runtime
from tierline.workers.stores.absorber_memory import MemoryAbsorberStore

ROOT = Path(__file__).resolve().parents[2]
GARBAGE = {
    "/json/v1/chat/completions": (200, b"<html>definitely not json</html>"),
    "/schema/v1/chat/completions": (200, b'{"choices": "none here"}'),
    "/error/v1/chat/completions": (400, b'{"error": {"message": "bad model"}}'),
}


class _Garbage(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        status, body = GARBAGE[self.path]
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def garbage_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize(("kind", "reason"), [
    ("json", "MalformedResponse"), ("schema", "MalformedResponse"), ("error", "Rejected")])
def test_garbage_answers_end_as_failed_attempts_with_the_reason(
        tmp_path: Path, garbage_url: str, kind: str, reason: str) -> None:
    data = yaml.safe_load((ROOT / "policies" / "demo.yaml").read_text())
    data["tiers"] = {"t0": ["sim-nano"]}  # one model: nothing to fall back to
    data["models"] = {"sim-nano": {**data["models"]["sim-nano"], "base_url_env": None,
                                   "base_url": f"{garbage_url}/{kind}"}}
    data["classifier"].pop("band_tiers", None)
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    upgrade(url)
    rt = Runtime(Settings("memory://", url, ROOT / "policies/demo.yaml"), policy_from_dict(data),
                 {}, absorber=MemoryAbsorberStore())
    client = Client(rt, publish=publish_nowhere)  # routed and answered here, below
    # realtime: no time to wait out what could be an outage
    # (tierline.router.live.breaker.retry_later_s)
    ids = client.submit_many(["hello", "world"], lane="realtime").request_ids
    routing.route(rt, ids, lambda bundle, _t, _l, _r: execute.execute(rt, bundle))
    with rt.engine.connect() as conn:
        tried = conn.execute(select(attempts.c.ok, attempts.c.error)).all()
        ended = conn.execute(select(results.c.status, results.c.error, results.c.content)).all()
    assert len(tried) == 2 and not any(ok for ok, _ in tried)
    assert all(error.startswith(reason) for _, error in tried)
    assert [(status, content) for status, _, content in ended] == [("failed", None)] * 2
    assert all(error.startswith(reason) for _, error, _ in ended)
