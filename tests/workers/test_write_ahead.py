"""Write-ahead attempts: every call is on record before the provider is called. When the
write after the call never happens, the call stays in the ledger as an attempt of unknown
outcome, charged at its reserved estimate, and the ledger still balances; on SQLite and
Postgres, through the tier worker's real code path."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests.conftest import publish_nowhere
from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.producer.client import Client
from tierline.record import ahead, jobs, records
from tierline.record.ahead import Ahead
from tierline.record.ledger import reconcile, unknowns
from tierline.record.period_report import compute, day_start_s, top_price
from tierline.record.records import AttemptRow, ResultRow
from tierline.record.schema import attempts, charges, pending_attempts, requests, results
from tierline.schedules.report_html import gather, page
from tierline.schedules.watchdog import watch
from tierline.workers import routing
from tierline.workers.engine import execute
from tierline.workers.engine.calls import prices_of
from tierline.workers.runtime import Runtime

CALLS: list[str] = []


def _reply(model: str, _asked: str) -> tuple[int, dict[str, object]]:
    CALLS.append(model)
    return 200, completion("Madrid", tokens_in=40, tokens_out=3)


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve(_reply) as url:
        yield url


def _break_result_writes(rt: Runtime, broken: bool, table: str = "results") -> None:
    """Make every insert into ``table`` fail (as a full disk would), or stop doing so."""
    with rt.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text(f"CREATE TRIGGER full_disk BEFORE INSERT ON {table} BEGIN "
                              "SELECT RAISE(ABORT, 'the disk is full'); END" if broken
                              else "DROP TRIGGER full_disk"))
        elif broken:
            conn.execute(text("CREATE OR REPLACE FUNCTION full_disk() RETURNS trigger AS $$ "
                              "BEGIN RAISE EXCEPTION 'the disk is full'; END $$ "
                              "LANGUAGE plpgsql"))
            conn.execute(text(f"CREATE TRIGGER full_disk BEFORE INSERT ON {table} "
                              "FOR EACH STATEMENT EXECUTE FUNCTION full_disk()"))
        else:
            conn.execute(text(f"DROP TRIGGER full_disk ON {table}"))


def _called_but_never_recorded(rt: Runtime) -> str:
    """One request whose call was made and whose outcome could not be written."""
    _break_result_writes(rt, True)
    before = len(CALLS)
    with pytest.raises(Exception, match="the disk is full"):
        route_here(rt, ["what is the capital of Spain?"])
    _break_result_writes(rt, False)
    assert len(CALLS) == before + 1  # the provider answered, and may bill for it
    with rt.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(pending_attempts)).scalar_one() == 1
        return str(conn.execute(select(requests.c.id)).scalar_one())


def test_a_call_whose_outcome_was_never_recorded_is_charged_at_its_estimate_when_it_comes_back(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "single"}), database_url)
    rid = _called_but_never_recorded(rt)
    assert execute.execute(rt, [rid], resumed=True).finished == 1
    with rt.engine.connect() as conn:
        tried = conn.execute(select(attempts.c.seq, attempts.c.ok, attempts.c.error,
                                    attempts.c.usage_estimated, attempts.c.tokens_out)
                             .order_by(attempts.c.seq)).all()
        assert conn.execute(select(func.count()).select_from(charges)).scalar_one() == 2
        assert conn.execute(select(results.c.attempts)).scalar_one() == 2
        assert reconcile(conn).balanced
        seen = unknowns(conn)
    (seq0, ok0, error0, estimated0, out0), (seq1, ok1, _, estimated1, out1) = tried
    assert (seq0, ok0, estimated0) == (0, False, True) and error0.startswith("Unknown: called at")
    assert out0 == 512  # reserved: the batch lane's output cap, not what came back
    assert (seq1, ok1, estimated1, out1) == (1, True, False, 3)
    assert seen.calls == 1 and seen.usd > 0 and seen.in_flight == 0


def test_the_watchdog_charges_a_gone_tasks_call_to_a_request_that_ended_meanwhile(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "single"}), database_url)
    _called_but_never_recorded(rt)
    with rt.engine.begin() as conn:  # its job is cancelled before the bundle comes back
        [job_id] = conn.execute(select(requests.c.job_id)).scalars()
        jobs.halt(conn, job_id, "cancelled", time.time())
    assert watch(rt).unknown == 0  # its task may still be running
    assert watch(rt, now_s=time.time() + 61).unknown == 1  # one lease later: it is gone
    with rt.engine.connect() as conn:
        status, n, usd = conn.execute(select(results.c.status, results.c.attempts,
                                             results.c.usd)).one()
        assert reconcile(conn).balanced
    assert (status, n) == ("cancelled", 1) and usd > 0


def test_a_shadow_call_never_recorded_stays_a_shadow_call_in_the_ledger(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    data = demo_policy({"kind": "single"})
    data["learning"] = {"shadow_rate": 1.0, "lanes": ["batch"], "usd_per_day_max": 5}
    rt = runtime(tmp_path, models_url, data, database_url)
    _break_result_writes(rt, True, "shadow_outcomes")  # the shadow step's write fails
    before = len(CALLS)
    route_here(rt, ["what is the capital of Spain?"])  # answered; the shadow step gives up
    _break_result_writes(rt, False, "shadow_outcomes")
    assert len(CALLS) == before + 2  # the answer's call and the shadow call were both made
    with rt.engine.connect() as conn:
        unrecorded = select(pending_attempts.c.shadow).where(~ahead.recorded())
        assert conn.execute(unrecorded).scalars().all() == [True]
    assert watch(rt, now_s=time.time() + 61).unknown == 1
    with rt.engine.connect() as conn:
        folded = conn.execute(select(attempts.c.shadow, attempts.c.error)
                              .where(attempts.c.usage_estimated)).one()
        charged = conn.execute(select(charges.c.shadow, charges.c.usd)
                               .where(charges.c.usage_estimated)).one()
        n, usd = conn.execute(select(results.c.attempts, results.c.usd)).one()
        balance = reconcile(conn)
    assert folded.shadow and folded.error.startswith("Unknown:")
    assert charged.shadow and charged.usd > 0
    assert n == 1 and usd < charged.usd  # the result counts only the answer's own call
    assert balance.balanced and balance.shadow_usd == charged.usd


def test_recorded_calls_leave_no_pending_row_after_the_next_watchdog_pass(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "single"}), database_url)
    route_here(rt, ["what is the capital of Spain?", "and of France?"])
    with rt.engine.connect() as conn:
        assert unknowns(conn).in_flight == 0  # recorded: settled, though not yet deleted
    assert watch(rt, now_s=time.time() + 61).unknown == 0  # settled calls are not unknown
    with rt.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pending_attempts)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(charges)).scalar_one() == 2
        assert reconcile(conn).balanced


def test_the_daily_report_counts_calls_of_unknown_outcome_beside_the_spend(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "single"}), database_url)
    _called_but_never_recorded(rt)
    route_here(rt, ["and of France?"])  # an ordinary call, recorded
    now_s = time.time() + 61
    assert watch(rt, now_s=now_s).unknown == 1
    today = dt.datetime.fromtimestamp(now_s, dt.UTC).date()
    with rt.engine.connect() as conn:
        [estimate] = conn.execute(select(attempts.c.usd).where(
            attempts.c.error.like("Unknown:%"))).scalars()
        spend = compute(conn, day_start_s(today), now_s + 1, *top_price(rt.policy))["spend"]
    assert (spend["calls"], spend["unknown_outcome_calls"]) == (2, 1)
    assert Decimal(spend["unknown_outcome_usd"]) == estimate > 0 and spend["balanced"]
    html = page(gather(rt.engine, rt.policy, [today], now_s + 1, "today"))
    assert f"1 calls of unknown outcome (made, their answer never recorded), charged at " \
           f"their reserved estimate: ${spend['unknown_outcome_usd']}" in html


def _routed_not_called(rt: Runtime, prompt: str) -> str:
    """One request routed, its bundle published but not yet run."""
    client = Client(rt, publish=publish_nowhere)
    [rid] = client.submit_many([prompt], lane="batch").request_ids
    routing.route(rt, [rid], lambda *_: None)
    return rid


@pytest.mark.parametrize("kind", ["single", "agreement"])  # the chains, and a step machine
def test_a_bundle_delivered_twice_at_once_never_calls_under_the_others_attempt_id(
        tmp_path: Path, models_url: str, database_url: str, kind: str) -> None:
    rt = runtime(tmp_path, models_url, demo_policy({"kind": kind}), database_url)
    rid = _routed_not_called(rt, "what is the capital of Spain?")
    first = rt.policy.tiers[rt.policy.tier_names[0]][0]
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # The other delivery (sent again by the watchdog) is calling attempt 0 right now.
        ahead.write(conn, [Ahead(rid, 0, first, rt.policy.tier_names[0], 10, 512,
                                 Decimal(1), Decimal(1), time.time())])
    before = len(CALLS)
    assert execute.execute(rt, [rid]).finished == 0  # left to the delivery calling it
    made = len(CALLS) - before
    with rt.engine.connect() as conn:
        recorded = conn.execute(select(attempts.c.seq)).scalars().all()
        assert conn.execute(select(func.count()).select_from(results)).scalar_one() == 0
    assert 0 not in recorded and len(recorded) == made  # each call made has its own row
    assert watch(rt, now_s=time.time() + 61).unknown == 1  # the other's call, once it is gone
    assert execute.execute(rt, [rid], resumed=True).finished == 1  # and the request goes on
    with rt.engine.connect() as conn:
        seqs = conn.execute(select(attempts.c.seq)).scalars().all()
        assert reconcile(conn).balanced
    assert sorted(seqs) == list(range(len(seqs)))  # one row per call, none shared


def test_a_real_answer_recorded_after_its_call_was_folded_replaces_the_estimate(
        tmp_path: Path, models_url: str, database_url: str) -> None:
    """The write of a task still running after its call was folded as of unknown outcome:
    the real usage replaces the attempt and its charge at the estimate, once, however often
    it is written."""
    rt = runtime(tmp_path, models_url, demo_policy({"kind": "single"}), database_url)
    rid = _called_but_never_recorded(rt)
    with rt.engine.begin() as conn:
        assert ahead.fold(conn, request_ids=[rid]) == 1
    with rt.engine.connect() as conn:
        request = records.load_requests(conn, [rid])[0]
        job_of = records.job_of(conn, [rid])
        model, started = conn.execute(select(attempts.c.model, attempts.c.started_at)).one()
    real = AttemptRow(rid, 0, model, rt.policy.tier_of(model), True, None, 40, 3, False, 0.2,
                      started)
    done = [ResultRow(rid, "ok", model, "Madrid", None, started + 0.2)]
    for _ in range(2):  # the late write, then a redelivery of the same
        with rt.engine.begin() as conn:
            records.record_outcomes(conn, [real], done, prices_of(rt), {rid: request}, job_of)
    with rt.engine.connect() as conn:
        assert conn.execute(select(attempts.c.ok, attempts.c.tokens_out,
                                   attempts.c.usage_estimated)).all() == [(True, 3, False)]
        assert conn.execute(select(charges.c.tokens_out, charges.c.usage_estimated)
                            ).all() == [(3, False)]
        assert conn.execute(select(requests.c.status)).scalar_one() == "done"
        assert reconcile(conn).balanced
