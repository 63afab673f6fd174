"""Write-ahead attempts: every call is on record before the provider is called.

A tier worker writes one ``pending_attempts`` row per call of a round (one statement for
the round), with the tokens it reserved (the prompt's estimate and the output cap) and the
prices in force, then calls, the statement committed on its own. A pending row whose
attempt is recorded (same id) is settled: the transaction that records the round's real
attempts, charges and results does not touch ``pending_attempts``, and settled rows are
deleted in bulk by :func:`fold` (all of them on every watchdog pass, a bundle's own when
it comes back).
Deleting them in the hot transaction cost one more statement per round (measured in
bench/RESULTS.md).

Two deliveries of one bundle running at once (one sent again by the watchdog while the
first was still queued or working) could number a call alike: the second to write it ahead
finds the id taken and does not call (:class:`tierline.router.errors.Taken`,
tierline.workers.engine.calls), so every
call made has a pending row of its own.

A pending row that outlives its task is a call of *unknown outcome*: the worker was killed
after calling, or the write after the call failed for good. :func:`fold` turns it into an
attempt (``ok`` false, its error starting ``Unknown:``) and a charge at the reserved
estimate (``usage_estimated``), so the ledger has every call that may have been paid for,
and counts it into its request's result if that has been written meanwhile. It runs when a
bundle comes back (before it numbers its new calls) and on every watchdog pass for rows
older than one visibility timeout (their task is gone). A real answer recorded later for
the same attempt replaces the estimate (:func:`settle_unknown`). A shadow call's row is
marked ``shadow`` (migration 0015), and so are the attempt and charge it is folded into:
it stays a shadow call in the ledger and is never counted into its request's result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.engine import Connection

from tierline.record.db import among, insert_ignore, insert_new
from tierline.record.schema import attempts, charges, pending_attempts, requests, results

UNKNOWN = "Unknown"  # the error class of an attempt whose outcome was never recorded
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Ahead:
    """A call about to be made, as reserved."""

    request_id: str
    seq: int
    model: str
    tier: str
    tokens_in: int
    tokens_out: int
    usd_per_1m_input: Decimal
    usd_per_1m_output: Decimal
    started_at: float
    shadow: bool = False  # a shadow call (workers.engine.shadow), not the request's own

    @property
    def id(self) -> str:
        return f"{self.request_id}/{self.seq}"


def unknown_reason(started_at: float) -> str:
    """The error of a call whose outcome was never recorded."""
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started_at))
    return (f"{UNKNOWN}: called at {at} UTC and its outcome never recorded (the worker "
            "stopped, or could not write); charged at its reserved estimate")


def write(conn: Connection, calls: Sequence[Ahead]) -> set[str]:
    """Put a round's calls on record before they are made, in one statement; returns the ids
    written. A call whose id is on record already belongs to another delivery of the same
    request, calling now or gone: making it too would be a paid call under an id whose
    attempt only one of them can record."""
    return set(insert_new(conn, pending_attempts, [{
        "id": c.id, "request_id": c.request_id, "seq": c.seq, "model": c.model, "tier": c.tier,
        "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
        "usd_per_1m_input": c.usd_per_1m_input, "usd_per_1m_output": c.usd_per_1m_output,
        "started_at": c.started_at, "shadow": c.shadow} for c in calls], "id"))


def settle(conn: Connection, attempt_ids: Sequence[str]) -> None:
    """These calls' attempts are recorded: their write-ahead rows are done with."""
    if attempt_ids:
        conn.execute(delete(pending_attempts).where(among(conn, pending_attempts.c.id,
                                                          attempt_ids)))


def recorded() -> ColumnElement[bool]:
    """A pending row whose attempt is on record: settled, only waiting to be deleted."""
    return exists(select(attempts.c.id).where(attempts.c.id == pending_attempts.c.id))


def fold(conn: Connection, *, request_ids: Sequence[str] | None = None,
         started_before: float | None = None) -> int:
    """Record the pending calls of these requests (or those started before
    ``started_before``) as attempts of unknown outcome, charged at their reserved estimate;
    returns how many were added to the ledger."""
    which: list[ColumnElement[bool]] = []
    if request_ids is not None:
        if not request_ids:
            return 0
        which.append(among(conn, pending_attempts.c.request_id, request_ids))
    # The settled rows go whatever their age (so the table holds about one watchdog period
    # of them, which a bundle that comes back scans by request), then the rest are folded.
    conn.execute(delete(pending_attempts).where(*which, recorded()))
    if started_before is not None:
        which.append(pending_attempts.c.started_at < started_before)
    pending = conn.execute(select(pending_attempts).where(*which)).all()
    if not pending:
        return 0
    owners = {row.id: row for row in conn.execute(
        select(requests.c.id, requests.c.tenant, requests.c.lane, requests.c.job_id)
        .where(among(conn, requests.c.id, list({p.request_id for p in pending}))))}
    usd = {p.id: (p.tokens_in * p.usd_per_1m_input + p.tokens_out * p.usd_per_1m_output)
           / _MILLION for p in pending}
    new = set(insert_new(conn, attempts, [{
        "id": p.id, "request_id": p.request_id, "seq": p.seq, "model": p.model, "tier": p.tier,
        "ok": False, "error": unknown_reason(p.started_at), "tokens_in": p.tokens_in,
        "tokens_out": p.tokens_out, "usage_estimated": True, "latency_s": 0.0,
        "usd": usd[p.id], "started_at": p.started_at, "shadow": p.shadow} for p in pending],
        "id"))
    insert_ignore(conn, charges, [{
        "attempt_id": p.id, "request_id": p.request_id, "job_id": owner.job_id,
        "tenant": owner.tenant, "lane": owner.lane, "model": p.model, "tokens_in": p.tokens_in,
        "tokens_out": p.tokens_out, "usd_per_1m_input": p.usd_per_1m_input,
        "usd_per_1m_output": p.usd_per_1m_output, "usd": usd[p.id], "usage_estimated": True,
        "charged_at": p.started_at, "day": int(p.started_at // 86400), "shadow": p.shadow}
        for p in pending if p.id in new and (owner := owners.get(p.request_id)) is not None])
    # A request that ended meanwhile (its job cancelled, its deadline passed) counts them;
    # shadow calls are never part of a result.
    added: dict[str, tuple[int, Decimal]] = {}
    for p in pending:
        if p.id in new and not p.shadow:
            n, spent = added.get(p.request_id, (0, Decimal(0)))
            added[p.request_id] = (n + 1, spent + usd[p.id])
    ended = set(conn.execute(select(results.c.request_id).where(
        among(conn, results.c.request_id, list(added)))).scalars()) if added else set()
    for rid in ended:
        n, spent = added[rid]
        conn.execute(update(results).where(results.c.request_id == rid).values(
            attempts=results.c.attempts + n, usd=results.c.usd + spent))
    settle(conn, [p.id for p in pending])
    return len(new)


def settle_unknown(conn: Connection, real: Sequence[dict[str, Any]],
                   real_charges: Sequence[dict[str, Any]]) -> None:
    """Replace attempts of unknown outcome (and their charges) by the real ones recorded
    for the same calls. Only a bundle delivered twice at once can get here."""
    if not real:
        return
    ids = [row["id"] for row in real]
    unknown = set(conn.execute(select(attempts.c.id).where(
        among(conn, attempts.c.id, ids), attempts.c.error.like(f"{UNKNOWN}:%"))).scalars())
    charged = {row["attempt_id"]: row for row in real_charges}
    for row in real:
        if row["id"] not in unknown:
            continue
        conn.execute(update(attempts).where(attempts.c.id == row["id"]).values(
            {k: v for k, v in row.items() if k != "id"}))
        conn.execute(delete(charges).where(charges.c.attempt_id == row["id"]))
        if row["id"] in charged:
            insert_ignore(conn, charges, [charged[row["id"]]])
