"""Chat completions through tierline, as OpenAI's API shapes them: submit one request,
wait for its answer within the lane's latency budget, and answer it as a ``chat.completion``
or as ``chat.completion.chunk`` events (:mod:`tierline.gateway` serves them over HTTP).

A streamed request is answered piece by piece where its strategy accepts the first answer
(``kind: single``): the tier worker relays the text as the model writes it
(:mod:`tierline.workers.engine.relay`, followed by :mod:`tierline.producer.streams`). Under a
cascade or a panel the
answer may still be replaced, so it comes in one chunk once it is accepted. Errors found
before the answer starts are raised (:class:`~tierline.producer.openai_shapes.HttpError`); later
ones are ``error`` events, which OpenAI's SDKs raise.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, cast

from kombu.exceptions import OperationalError
from sqlalchemy import Engine

from tierline.producer.client import Client, time_ordered_id
from tierline.producer.openai_shapes import HttpError, bad, completion, request_fields
from tierline.producer.streams import AnswerReplaced, follow, rest_of
from tierline.record import realtime
from tierline.record.listener import listener_for
from tierline.router.envelope import Request, build_request
from tierline.router.errors import InvalidInput
from tierline.router.live.bundling import Item, bundle
from tierline.router.live.decide import Decision
from tierline.router.policy import LANES, BundlingSpec
from tierline.workers import routing
from tierline.workers.app import ingress_queue, tier_queue
from tierline.workers.engine import inline
from tierline.workers.engine.calls import relays

WAIT_MARGIN_S = 2.0
MAX_WAIT_S = 120.0  # an HTTP call should not hang for a batch lane's day-long budget
DEFAULT_LANE = "realtime"
JOB_NAME = "gateway"
POLL_S, MAX_POLL_S = 0.005, 0.25  # waiting without notifications (SQLite), first and longest
# Waiting with notifications (Postgres), first and longest: only a broken LISTEN connection
# loses one, and the listener then wakes every waiter. Polling from 50 ms read each answer
# about six times at 32 clients, the gateway's most frequent query.
LISTENING_POLL_S = (0.5, 2.0)
IDLE_S = 5.0  # the ingress thread ends after this long with nothing to send
MAX_PER_MESSAGE = 64  # requests per ingress message at most (the router's chunk)
# With this many calls waiting, gather for this long before publishing. Measured on the
# 2-core box at 32 clients, side by side: 5 ms gave 1.8x the requests/s of none, 20 ms doubled
# it again, 50 ms added 1.7x; gathering only while requests kept coming within 3 ms of each
# other halved it (closed-loop callers come back spread out, not in bursts). With realtime
# sent straight to its tier (DIRECT_LANES), 20 ms beat 50 ms (8 clients 1.4x the requests/s,
# 32 clients 1.25x, p99 0.83x) and 5 ms (32 clients 0.7x of 20 ms), side by side.
BUSY_WAITING, GATHER_S = 8, 0.02
# With TIERLINE_GATEWAY_CALLS=inline, a realtime call is answered in the gateway's process
# while at most this many calls wait (itself included). Measured side by side at 8 clients, a
# call answered alone cost 23.8 ms of CPU (gateway and tier worker) against 16.5 ms sent in
# the tier workers' bundles, and one process's GIL capped the rate at 32 clients; at 1 client
# answering here cost 21.4 ms against 32.8 (bench/RESULTS.md).
INLINE_MAX_WAITING = 2
# Lanes whose calls the gateway routes itself and sends straight to their tier's queue: the
# router worker's hop (a broker round trip, a load and a transaction) is a third of a
# realtime call's time. The other lanes go through the router worker, which bundles many.
DIRECT_LANES = frozenset({"realtime"})

log = logging.getLogger(__name__)


class Chat:
    """One client's chat completions; ``max_wait_s`` caps any wait for an answer."""

    def __init__(self, client: Client, max_wait_s: float = MAX_WAIT_S,
                 engine: Engine | None = None) -> None:
        self.client = client
        self.max_wait_s = max_wait_s
        self.engine = engine or client.rt.engine  # the gateway gives one with a bigger pool
        self._lock = threading.Lock()
        self.ingress = Ingress(self.engine, client.rt.policy.bundling)
        self.inline = client.rt.settings.gateway_calls == "inline"  # workers.engine.inline
        # Calls answered here write through the gateway's pool, not the shared engine's: it
        # pings each connection before use, three round trips a call (a dead connection
        # fails the call here, which then goes to the tier worker, as any error does).
        self._answering = (client.rt.on_engine(self.engine)
                           if self.inline and self.engine is not client.rt.engine else client.rt)

    def complete(self, body: Any, lane: str | None, key: str | None,
                 tenant: str | None = None) -> dict[str, Any]:
        """Submit one chat completion, wait for its answer, and shape it like OpenAI's."""
        with self._waiting():
            return self._completed(self._submit(body, lane, key, tenant, stream=False))

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        with self._lock:
            self.ingress.waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self.ingress.waiting -= 1

    def stream(self, body: Any, lane: str | None, key: str | None, tenant: str | None,
               include_usage: bool) -> list[dict[str, Any]] | Iterator[dict[str, Any]]:
        """Submit one chat completion and answer it as OpenAI's chunk events: its text as
        the model generates it where the strategy accepts the first answer (``single``; see
        tierline.workers.engine.relay), else the whole answer in one chunk once it is accepted.
        Errors found
        before the answer starts are raised (ordinary JSON errors); later ones are events."""
        submitted = self._submit(body, lane, key, tenant, stream=True)
        if not relays(self.client.rt.policy.strategy):
            return chunks(self._completed(submitted), include_usage)
        return self._relayed(submitted, include_usage)

    def _submit(self, body: Any, lane: str | None, key: str | None, tenant: str | None, *,
                stream: bool) -> _Submitted:
        lane = lane or DEFAULT_LANE
        if lane not in LANES:
            raise bad(f"X-Tierline-Lane: unknown lane {lane!r}; use one of {', '.join(LANES)}",
                      "lane")
        raw = request_fields(body)
        if key:
            raw["id"] = key
        if stream:
            raw["stream"] = True
        now = time.time()
        try:
            request = build_request(raw, self.client.rt.policy, now_s=now,
                                    new_id=time_ordered_id(), lane=lane, tenant=tenant)
        except InvalidInput as exc:  # OpenAI's name for the one field whose name differs
            message = str(exc).replace("max_output_tokens:", "max_tokens:", 1)
            raise bad(message, "invalid_request") from exc
        decision = self._decided(request, now) if lane in DIRECT_LANES else None
        # Answered here, in the caller's thread (no broker hop, no wake-up back), while it is
        # about alone; busier, calls go to the tier workers in bundles (INLINE_MAX_WAITING).
        here = (decision is not None and not stream and self.inline
                and self.ingress.waiting <= INLINE_MAX_WAITING)
        accepted = realtime.once_more(lambda: realtime.accept_one(
            self.engine, request, job_name=JOB_NAME, now_s=now, decision=decision,
            handed_on=here))
        if accepted.new and here and decision is not None:
            inline.answer_here(self._answering, [accepted.request_id],
                               tier_queue(decision.tier, request.lane))
        elif accepted.new:
            self.ingress.send(accepted.request_id, request.lane, None if decision is None else
                              Item(key=(decision.tier, decision.model, request.lane),
                                   request_id=request.id,
                                   est_tokens=routing.estimate_tokens(
                                       len(request.prompt_text), request.max_output_tokens),
                                   deadline_at=request.deadline_at))
        budget_s = self.client.rt.policy.lanes[lane].latency_budget_s  # type: ignore[index]
        return _Submitted(accepted.request_id, accepted.job_id, bool(key),
                          min(budget_s + WAIT_MARGIN_S, self.max_wait_s), time.monotonic(),
                          answered_here=here)

    def _decided(self, request: Request, now_s: float) -> Decision | None:
        """The decision the router worker would make (the same code, the same reasons), or
        None if deciding here failed: the router worker then decides, as for other lanes."""
        try:
            return routing.decide_now(self.client.rt, [request], now_s)[0]
        except Exception:  # noqa: BLE001 - the router worker's path still answers the call
            log.warning("request %s: deciding in the gateway failed; the router worker "
                        "decides", request.id, exc_info=True)
            return None

    def _completed(self, submitted: _Submitted) -> dict[str, Any]:
        """Wait out the rest of the request's time for its answer, as a chat.completion."""
        request_id, job_id = submitted.request_id, submitted.job_id
        row = self._answer(submitted)
        if row["status"] in ("failed", "expired", "cancelled"):
            raise HttpError(502, f"request {request_id} {row['status']}: {row['error']}",
                            "upstream_error", row["status"])
        if row["status"] != "done":
            fetch = ("repeat with the same Idempotency-Key" if submitted.keyed
                     else f"`tierline results {job_id}`")
            raise HttpError(504, f"request {request_id} not answered within "
                            f"{submitted.waited_s:g} s; it is kept and will be answered: "
                            f"{fetch} fetches the answer", "timeout", "timeout")
        return completion(row, job_id, created_at=row["submitted_at"],
                          tokens_in=row["tokens_in"], tokens_out=row["tokens_out"])

    def _answer(self, submitted: _Submitted) -> dict[str, Any]:
        """The request's row once it has ended, or as it is when its time is up. On Postgres
        the commit of its result wakes the wait (``tierline.record.db.notify_jobs``); a poll,
        backing
        off, covers a missed notification, and is all there is on SQLite."""
        engine = self.engine
        if submitted.answered_here:  # ended already, unless it was handed to a tier worker
            row = realtime.once_more(lambda: realtime.answer_of(engine, submitted.request_id))
            if row["status"] in realtime.ENDED:
                return row
        listener = listener_for(engine)
        poll_s, max_poll_s = (POLL_S, MAX_POLL_S) if listener is None else LISTENING_POLL_S
        with listener.bell(submitted.job_id) if listener else nullcontext(
                threading.Event()) as bell:
            while True:
                row = realtime.once_more(
                    lambda: realtime.answer_of(engine, submitted.request_id))
                left_s = submitted.left_s()
                if row["status"] in realtime.ENDED or left_s <= 0:
                    return row
                if bell.wait(min(poll_s, left_s)):
                    bell.clear()
                poll_s = min(poll_s * 1.5, max_poll_s)

    def _relayed(self, submitted: _Submitted, include_usage: bool) -> Iterator[dict[str, Any]]:
        """The answer's chunks as the tier worker relays its text, then its end."""
        head: dict[str, Any] = {"id": f"chatcmpl-{submitted.request_id}",
                                "object": "chat.completion.chunk", "created": int(time.time()),
                                "model": None}
        sent, replaced = "", False
        try:
            for piece in follow(self.client.rt, submitted.request_id, submitted.left_s()):
                head["model"] = piece.model
                yield _piece(head, piece.text, first=not sent)
                sent += piece.text
        except AnswerReplaced:
            replaced = True
        try:
            answer = self._completed(submitted)
        except HttpError as exc:
            yield exc.body
            return
        head["model"] = answer["model"]
        try:
            rest = rest_of(answer["choices"][0]["message"]["content"] or "", sent, replaced,
                           submitted.request_id)
        except AnswerReplaced as exc:
            yield {"error": {"message": f"{exc}. The whole answer is kept: repeat with the same "
                             "Idempotency-Key, or read it with `tierline results "
                             f"{submitted.job_id}`", "type": "upstream_error",
                             "code": "answer_replaced"}}
            return
        if rest or not sent:
            yield _piece(head, rest, first=not sent)
        yield from chunks(answer, include_usage)[1:]


@dataclass(frozen=True)
class _Submitted:
    """A request the gateway submitted, and how long it may wait for the answer."""

    request_id: str
    job_id: str
    keyed: bool  # it has an Idempotency-Key, so a repeat fetches the answer
    waited_s: float
    at: float  # time.monotonic() when submitted
    answered_here: bool = False  # by this process (tierline.workers.engine.inline), before the wait

    def left_s(self) -> float:
        return self.waited_s - (time.monotonic() - self.at)


def _piece(head: dict[str, Any], text: str, *, first: bool) -> dict[str, Any]:
    """A chunk that carries the next piece of the answer (the first one names the role)."""
    delta = {"role": "assistant", "content": text} if first else {"content": text}
    return head | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion as OpenAI's ``chat.completion.chunk`` events: the whole answer in one
    chunk, then the finish reason (with the ``tierline`` object), then usage if asked."""
    head = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"}
    choice = completion["choices"][0]
    out = [head | {"choices": [{"index": 0, "delta": {"role": "assistant",
                                                      "content": choice["message"]["content"]},
                                "finish_reason": None}]},
           head | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
                   "tierline": completion["tierline"]}]
    if include_usage:
        out.append(head | {"choices": [], "usage": completion.get("usage")})
    return out


class Ingress:
    """Hands accepted requests to the router's ingress queues, or, when the gateway decided
    their route itself (``DIRECT_LANES``), their bundles straight to their tier's queue, from
    one thread: whatever was
    accepted while the previous message was being published goes in the next one, so under
    load the router gets them together and bundles them (one tier message, one round of
    database writes for many), and a lone request goes at once. While many calls wait for
    their answers (``BUSY_WAITING``), it also waits up to ``GATHER_S`` for more: when
    answers take hundreds of milliseconds anyway, a few more make each bundle, and so each
    round of the tier worker's writes, serve many calls. It then notes that they were
    sent (``enqueued_at``, for the sweeper, which re-sends what the broker never got). If the
    broker is down they stay un-noted, and the sweeper sends them later (the watchdog, for
    those already routed: it re-sends requests in flight that stopped moving)."""

    def __init__(self, engine: Engine, bundling: BundlingSpec) -> None:
        self.engine = engine
        self.bundling = bundling
        self._accepted: queue.SimpleQueue[tuple[str, str, Item | None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.waiting = 0  # calls accepted and not yet answered, as Chat counts them

    def send(self, request_id: str, lane: str, routed: Item | None = None) -> None:
        """Hand one accepted request on: ``routed`` (its decision's bundle key) when the
        gateway decided it, else None (the router worker decides)."""
        self._accepted.put((request_id, lane, routed))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="tierline-ingress")
                self._thread.start()

    def _publish(self, gathered: list[tuple[str, str, Item | None]]) -> list[str]:
        """One message per bundle of requests routed here, one per lane for the others;
        returns the ids the broker took."""
        from tierline.workers.tasks import call_models, route_requests

        by_lane: dict[str, list[str]] = {}
        routed: list[Item] = []
        for request_id, lane, item in gathered:
            if item is None:
                by_lane.setdefault(lane, []).append(request_id)
            else:
                routed.append(item)
        messages: list[tuple[Any, list[Any], dict[str, Any], str]] = [
            (route_requests, [ids], {}, ingress_queue(lane)) for lane, ids in by_lane.items()]
        for group in bundle(routed, max_count=self.bundling.max_count,
                            max_tokens=self.bundling.max_tokens):
            tier, _model, lane = cast(tuple[str, str, str], group[0].key)
            messages.append((call_models, [[it.request_id for it in group]],
                             {"resumed": False}, tier_queue(tier, lane)))
        sent: list[str] = []
        for task, args, kwargs, queue_name in messages:
            try:
                task.apply_async(args=args, kwargs=kwargs, queue=queue_name, retry=False)
                sent.extend(args[0])
            except OperationalError:
                log.warning("%d requests: the broker is unreachable; the sweeper or the "
                            "watchdog will send them", len(args[0]))
        return sent

    def _run(self) -> None:
        while True:
            try:
                first = self._accepted.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:  # a request put meanwhile finds no live thread: it starts one
                    self._thread = None
                if self._accepted.empty():
                    return
                continue
            gathered = [first]
            until = time.monotonic() + (GATHER_S if self.waiting >= BUSY_WAITING else 0.0)
            while len(gathered) < MAX_PER_MESSAGE:
                try:
                    left_s = until - time.monotonic()
                    gathered.append(self._accepted.get(timeout=left_s) if left_s > 0
                                    else self._accepted.get_nowait())
                except queue.Empty:
                    break
            sent = self._publish(gathered)
            try:
                realtime.mark_enqueued(self.engine, sent, time.time())
            except Exception:  # the sweeper sends them again: harmless, as tasks run twice
                log.warning("could not note %d requests as enqueued", len(sent), exc_info=True)
