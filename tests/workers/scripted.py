"""Stand-ins for the tier-worker tests: a scripted OpenAI-compatible model server on
loopback, and a runtime (SQLite, the in-memory absorber) that accepts, routes and answers
requests in this thread through the real code path."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import publish_nowhere
from tierline.config.settings import Settings
from tierline.producer.client import Client
from tierline.record.db import upgrade
from tierline.router.policy import policy_from_dict
from tierline.workers import routing
from tierline.workers.engine import execute, shadow
from tierline.workers.engine.health import HealthStore
from tierline.workers.runtime import Runtime
from tierline.workers.stores.absorber_memory import MemoryAbsorberStore

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "policies" / "demo.yaml"

# (model, the last message's text) -> (HTTP status, JSON body[, response headers])
Reply = Callable[[str, str], tuple[Any, ...]]


def completion(text: str, tokens_in: int = 40, tokens_out: int = 3) -> dict[str, Any]:
    """A chat completion body answering ``text``."""
    return {"choices": [{"message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}}


class _Server(ThreadingHTTPServer):
    """Each call opens a connection (HTTP/1.0): past the stdlib's listen backlog of 5, a
    burst of connects is dropped and retried by the client's kernel a second later."""

    request_queue_size = 128


@contextmanager
def serve(reply: Reply) -> Iterator[str]:
    """A model server answering every chat completion with ``reply``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            status, answer, *headers = reply(body["model"], body["messages"][-1]["content"])
            data = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in (headers[0] if headers else {}).items():
                self.send_header(name, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def demo_policy(strategy: dict[str, Any]) -> dict[str, Any]:
    """The demo policy as data, with ``strategy`` and every band on the cheapest tier."""
    data = yaml.safe_load(DEMO.read_text())
    data["strategy"] = strategy
    data["classifier"]["band_tiers"] = {"low": "t0", "mid": "t0", "high": "t0"}
    return data


def runtime(tmp_path: Path, url: str, policy: dict[str, Any], database_url: str | None = None,
            *, health: HealthStore | None = None) -> Runtime:
    """A runtime whose models are reached at ``url``, on ``database_url`` (migrated here) or
    else a fresh SQLite file; ``health``: a registry shared with another runtime."""
    db = database_url or f"sqlite:///{tmp_path / 'worker.sqlite'}"
    upgrade(db)
    return Runtime(Settings("memory://", db, DEMO), policy_from_dict(policy),
                   {"TIERLINE_SIM_URL": url}, absorber=MemoryAbsorberStore(), health=health)


def a_minute_later(rt: Runtime) -> Runtime:
    """``rt`` with every per-minute budget free again, as a minute later: a fresh absorber
    store; the record, the health registry and the relay are the same."""
    return Runtime(rt.settings, rt.policy, rt.env, absorber=MemoryAbsorberStore(),
                   health=rt.health, relay=rt.relay)


def route_here(rt: Runtime, prompts: list[Any]) -> list[execute.BundleReport]:
    """Accept the requests, route them and answer each bundle in this thread."""
    client = Client(rt, publish=publish_nowhere)  # routed and answered here, below
    ids = client.submit_many(prompts, lane="batch").request_ids
    outcomes: list[execute.BundleReport] = []
    routing.route(rt, ids, lambda bundle, _t, _l, resumed: outcomes.append(
        execute.execute(rt, bundle, resumed=resumed)))
    for outcome in outcomes:  # what the shadow task does with a bundle's sample
        shadow.run(rt, outcome.shadow)
    return outcomes
