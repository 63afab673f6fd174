"""A classification job's engine: rows in, one prompt each, one output row per input row out.

Rows stream from the input into ``Client.submit_many`` (one classification prompt each,
see ``tierline.router.learned.labels``); once the job ends, the input is read again beside the job's
results — both in row order — to write one output row per input row. Nothing holds the
whole file in memory. The same functions serve the command and the nightly beat tasks.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tierline.producer.client import Client
from tierline.producer.intake import Line
from tierline.producer.jobspec import JobSpec
from tierline.producer.rows import ErrorLog, OutputWriter, check_readable, read_rows
from tierline.record.records import Price
from tierline.record.reports import job_summary
from tierline.router.learned.labels import build_prompt

OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class Submitted:
    """A classification job handed to tierline: its id, the key prefix of its rows, counts."""

    job_id: str
    run: str
    rows: int
    accepted: int
    rejected: int
    not_enqueued: int
    out: Path
    errors: Path


@dataclass
class Summary:
    """What a classification job did: rows, labels, accuracy, cost, escalation."""

    job_id: str
    state: str
    rows: int = 0
    rejected: int = 0
    answered: int = 0
    failed: int = 0  # submitted but not answered: failed, cancelled, expired or still pending
    null_labels: int = 0  # answered, but the answer named no single label
    low_confidence: int = 0  # answered with confidence below the policy's bar
    gold_rows: int = 0  # submitted rows with a gold label
    correct: int = 0
    escalated: int = 0  # requests that needed more than one attempt
    usd: str = "0"
    usd_all_top: str = "0"
    top_model: str = ""
    by_model: dict[str, int] = field(default_factory=dict)
    out: str = ""
    errors: str = ""

    @property
    def submitted(self) -> int:
        return self.rows - self.rejected

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.gold_rows if self.gold_rows else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "submitted": self.submitted, "accuracy": self.accuracy}


def _key_of(run: str, row: int) -> str:
    return f"{run}:{row}"


def _row_of(key: str | None) -> int | None:
    return int(key.rsplit(":", 1)[1]) if key and ":" in key else None


def max_text_chars(client: Client, spec: JobSpec) -> int:
    """The longest text a row may hold: the policy's prompt limit less the prompt around it."""
    overhead = len(build_prompt("x", spec.labels, spec.instructions)) - 1
    return client.rt.policy.requests.max_prompt_chars - overhead


def submit(client: Client, spec: JobSpec, *, now_s: float | None = None,
           on_bytes: OnBytes | None = None, name: str | None = None) -> Submitted:
    """Stream the job's rows into tierline; rejected rows go to the errors file at once."""
    check_readable(spec)
    now_s = time.time() if now_s is None else now_s
    out = spec.out_path(now_s)
    errors = ErrorLog(spec.errors_path(out))
    run = uuid.uuid4().hex[:12]
    limit = max_text_chars(client, spec)
    output_tokens = min(spec.output_tokens(), client.rt.policy.requests.max_output_tokens)
    where: dict[int, tuple[int, str | None]] = {}  # (line, id) of rows refused here
    rows = 0

    def items() -> Iterator[Line]:
        nonlocal rows
        for row in read_rows(spec):
            rows += 1
            error = row.error
            if error is None and row.text is not None and len(row.text) > limit:
                error = f"text is {len(row.text):,} characters; the limit is {limit:,}"
            if error is not None:
                where[row.row] = (row.line, row.id)
                yield Line(row.row, error=error, nbytes=row.nbytes)
                continue
            assert row.text is not None
            # The item's size is the text's, not the label list's: the estimator reads it.
            metadata = {"row": row.row, "word_count": len(row.text.split()),
                        **({"id": row.id} if row.id is not None else {}),
                        # what a shadowed answer is also graded by (tierline.workers.engine.shadow)
                        **({"gold_label": row.gold} if row.gold is not None else {})}
            yield Line(row.row, {
                "prompt": build_prompt(row.text, spec.labels, spec.instructions),
                "idempotency_key": _key_of(run, row.row), "metadata": metadata,
                "max_output_tokens": output_tokens}, nbytes=row.nbytes)

    def on_reject(number: int, reason: str) -> None:
        line, row_id = where.pop(number, (None, None))
        errors.add(number, reason, line=line, row_id=row_id)

    try:
        report = client.submit_many(
            items(), lane=spec.lane, tenant=spec.tenant, job=name or spec.name,
            on_reject=on_reject, completion_window_s=spec.timeout_s,
            on_progress=(lambda _n, b: on_bytes(b)) if on_bytes else None)
    finally:
        errors.close()
    return Submitted(report.job_id, run, rows, report.accepted, report.rejected,
                     report.not_enqueued, out, errors.path)


def columns(spec: JobSpec) -> list[str]:
    """The output's columns, in order."""
    cols = ["row"] + (["id"] if spec.id_column else []) + ["label", "confidence"]
    cols += ["gold", "correct"] if spec.gold_column else []
    return cols + ["status", "model", "tier", "usd", "attempts", "reason", "error"]


def finish(client: Client, spec: JobSpec, job: Submitted, rejected: Mapping[int, str]
           ) -> Summary:
    """Write one output row per input row (rows and results merged in row order); summarise."""
    policy = client.rt.policy
    status = client.status(job.job_id)
    summary = Summary(job.job_id, status.state, out=str(job.out), errors=str(job.errors),
                      top_model=policy.top_model())
    bar = policy.strategy.confidence_bar
    by_model: Counter[str] = Counter()
    results = iter(client.results(job.job_id))
    pending = next(results, None)
    with OutputWriter(job.out, columns(spec)) as writer:
        for row in read_rows(spec):
            summary.rows += 1
            result = None
            if pending is not None and _row_of(pending["key"]) == row.row:
                result, pending = pending, next(results, None)
            out: dict[str, Any] = {"row": row.row, "id": row.id, "gold": row.gold}
            if result is None:
                summary.rejected += 1
                out.update(status="rejected", error=rejected.get(row.row, "not submitted"))
                writer.write(out)
                continue
            match = spec.labels.match(result["content"])
            answered = result["status"] == "done"
            out.update(status="ok" if answered else result["status"], model=result["model"],
                       tier=result["tier"], usd=result["usd"], attempts=result["attempts"],
                       reason=result["reason"], error=result["error"],
                       label=match.label if answered else None,
                       confidence=match.confidence if answered else None)
            if answered:
                summary.answered += 1
                by_model[result["model"]] += 1
                summary.null_labels += match.label is None
                summary.low_confidence += match.confidence < bar
            else:
                summary.failed += 1
            if row.gold is not None:
                out["correct"] = out["label"] == row.gold
                summary.gold_rows += 1
                summary.correct += out["correct"]
            writer.write(out)
    summary.by_model = dict(by_model.most_common())
    top = policy.models[policy.top_model()]
    with client.rt.engine.connect() as conn:
        spent = job_summary(conn, job.job_id, {m: policy.tier_of(m) for m in policy.models},
                            Price(Decimal(str(top.usd_per_1m_input)),
                                  Decimal(str(top.usd_per_1m_output))))
    summary.usd, summary.usd_all_top = str(spent.usd), str(spent.usd_all_top)
    summary.escalated = spent.escalated
    return summary


def summary_lines(spec: JobSpec, s: Summary, elapsed_s: float | None = None) -> list[str]:
    """The human summary of a finished job."""
    lines = [f"{spec.name}: {s.rows:,} rows → {s.out} (job {s.job_id}: {s.state})"]
    if s.rejected:
        lines.append(f"  rejected: {s.rejected:,} rows, reasons in {s.errors}")
    if s.submitted:
        lines.append(f"  labeled:  {s.answered - s.null_labels:,} of {s.submitted:,} "
                     f"({s.null_labels:,} answers named no label; {s.low_confidence:,} below "
                     f"the confidence bar; {s.failed:,} not answered)")
    if s.accuracy is not None:
        lines.append(f"  accuracy: {s.accuracy:.1%} against {spec.gold_column!r} "
                     f"({s.correct:,}/{s.gold_rows:,}; a null label counts as wrong)")
    if s.by_model:
        lines.append("  models:   " + ", ".join(f"{m} {n:,}" for m, n in s.by_model.items()))
    usd, top = Decimal(s.usd), Decimal(s.usd_all_top)
    if s.submitted:
        saved = f" ({1 - usd / top:.0%} saved)" if top else ""
        lines.append(f"  cost:     ${usd:.6f}; all on the top tier ({s.top_model}): "
                     f"${top:.6f}{saved}")
        lines.append(f"  escalated: {s.escalated / s.submitted:.1%} ({s.escalated:,} rows "
                     "took more than one attempt)")
    if elapsed_s:
        lines.append(f"  time:     {elapsed_s:.1f} s ({s.rows / elapsed_s:,.0f} rows/s)")
    return lines

