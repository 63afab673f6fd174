"""The gateway answering realtime calls in its own process (``gateway_calls: inline``), on the
distributed stack: the tier worker's code, ledger and hand-over, with no broker hop. Busier
gateways send bundles to the tier workers as before (tests/integration/test_gateway_distributed)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import serve_gateway
from tierline.config.settings import Settings, load_settings
from tierline.gateway.chat import INLINE_MAX_WAITING
from tierline.producer.client import Client
from tierline.record.schema import attempts, charges, pending_attempts, requests, results
from tierline.router.errors import InvalidInput
from tierline.router.policy import load_policy
from tierline.workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1
pytestmark = pytest.mark.integration


@contextmanager
def gateway(stack: dict[str, str], use_broker: Any, *, broker: str,
            absorber: Any = None) -> Iterator[tuple[str, Client]]:
    from tierline.workers.app import app

    settings = Settings(broker, stack["TIERLINE_DATABASE_URL"], POLICY,
                        redis_url=stack["TIERLINE_BROKER_URL"], gateway_calls="inline")
    seams = {} if absorber is None else {"absorber": absorber}
    rt = Runtime(settings, load_policy(POLICY), dict(stack), **seams)
    saved_rt, saved_broker = install(rt), str(app.conf.broker_url)
    use_broker(broker)
    try:
        client = Client(rt)
        with serve_gateway(client) as url:
            yield url, client
    finally:
        use_broker(saved_broker)
        install(saved_rt)


class AwayStore:
    """An absorber store that cannot be reached: every call fails."""

    def __getattr__(self, name: str) -> Any:
        raise ConnectionError(f"absorber store away ({name})")


def ask(url: str, number: int) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": f"What is {number} + 5?"}]}
    return httpx.post(f"{url}/chat/completions", json=body, timeout=60)


def ledger(client: Client, ids: list[str]) -> tuple[Any, ...]:
    with client.rt.engine.connect() as conn:
        statuses = set(conn.execute(select(requests.c.status)
                                    .where(requests.c.id.in_(ids))).scalars())
        calls = conn.execute(select(func.count(), func.sum(attempts.c.usd)).where(
            attempts.c.request_id.in_(ids))).one()
        charged = conn.execute(select(func.count(), func.sum(charges.c.usd)).where(
            charges.c.request_id.in_(ids))).one()
        billed = conn.execute(select(func.sum(results.c.usd))
                              .where(results.c.request_id.in_(ids))).scalar()
        # calls written ahead whose attempt never made the record
        ahead = conn.execute(select(func.count()).select_from(pending_attempts).where(
            pending_attempts.c.request_id.in_(ids),
            pending_attempts.c.id.not_in(select(attempts.c.id)))).scalar()
    return statuses, tuple(calls), tuple(charged), billed, ahead


def test_realtime_calls_are_answered_in_the_gateway_with_no_broker_at_all(
        stack: dict[str, str], use_broker: Any) -> None:
    # The broker is unreachable: only the gateway's own process can have answered. Two
    # calls at a time are few enough to be answered there (chat.INLINE_MAX_WAITING).
    with gateway(stack, use_broker, broker=NOWHERE) as (url, client):
        with ThreadPoolExecutor(INLINE_MAX_WAITING) as pool:
            answers = list(pool.map(lambda n: ask(url, n), range(12)))
    assert [a.status_code for a in answers] == [200] * 12, answers[0].text
    ids = [a.json()["tierline"]["request_id"] for a in answers]
    statuses, calls, charged, billed, ahead = ledger(client, ids)
    assert statuses == {"done"}
    assert calls[0] == charged[0] >= 12 and calls[1] == charged[1] == billed > 0
    assert ahead == 0  # every call written ahead is on record
    with client.rt.engine.connect() as conn:  # noted as sent when accepted: were the gateway
        unsent = conn.execute(select(func.count()).where(  # to die, the watchdog sends them
            requests.c.id.in_(ids), requests.c.enqueued_at.is_(None))).scalar()
    assert unsent == 0


def test_a_bundle_the_gateway_cannot_answer_is_handed_to_the_tier_worker(
        stack: dict[str, str], use_broker: Any) -> None:
    # The gateway's token budgets are away (its absorber store fails on every call, in the
    # gateway's process only): each bundle goes to the tier's queue, resumed, and the
    # stack's tier worker answers it.
    with gateway(stack, use_broker, broker=stack["TIERLINE_BROKER_URL"],
                 absorber=AwayStore()) as (url, client):
        answers = [ask(url, n) for n in range(3)]
    assert [a.status_code for a in answers] == [200] * 3, answers[0].text
    ids = [a.json()["tierline"]["request_id"] for a in answers]
    statuses, calls, charged, billed, ahead = ledger(client, ids)
    assert statuses == {"done"}
    assert calls[0] == charged[0] == 3 and calls[1] == charged[1] == billed > 0
    assert ahead == 0


def test_gateway_calls_come_from_the_environment_and_a_bad_value_is_named() -> None:
    assert load_settings({}).gateway_calls == "queue"
    assert load_settings({"TIERLINE_GATEWAY_CALLS": "inline"}).gateway_calls == "inline"
    with pytest.raises(InvalidInput, match="TIERLINE_GATEWAY_CALLS=.celery."):
        load_settings({"TIERLINE_GATEWAY_CALLS": "celery"})
    assert replace(load_settings({}), gateway_calls="inline").gateway_calls == "inline"
