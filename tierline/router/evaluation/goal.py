"""The goal check: tierline's methods, chosen on validation folds, against the best
baseline on the test split — a larger AIQ, at least 20% less cost to reach 95% / 99% of the
best single model's accuracy, and an operating point more accurate than that model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tierline.router.evaluation.methods import Report, Summary


@dataclass(frozen=True)
class Verdict:
    """tierline's method chosen on validation against the best baseline, per criterion."""

    criterion: str  # aiq | cost_to_95 | cost_to_99 | accuracy (one operating point)
    method: str
    value: float | None
    baseline: str
    baseline_value: float | None
    met: bool  # AIQ larger; cost at least 20% lower; accuracy above the best single model's


def _cost(summary: Summary, criterion: str) -> float:
    """A cost to reach a target; never reached counts as infinite (0 is a real cost)."""
    value = getattr(summary, criterion)
    return float("inf") if value is None else float(value)


def choose_methods(validations: Sequence[Report]) -> dict[str, str]:
    """Per criterion, the tierline method that did best on average over the validation
    reports (folds of the train split: one slice alone picks by its noise)."""
    figures: dict[str, list[Summary]] = {}
    for report in validations:
        for s in report.summaries:
            if s.kind == "tierline":
                figures.setdefault(s.method, []).append(s)

    def mean(method: str, criterion: str) -> float:
        values = [getattr(s, criterion) if criterion == "aiq" else _cost(s, criterion)
                  for s in figures[method]]
        return sum(values) / len(values)

    points: dict[str, list[tuple[float, float]]] = {}
    for report in validations:
        for r in report.rows:
            if r.kind == "tierline":
                points.setdefault(r.strategy, []).append((r.accuracy, -r.usd))
    return {
        "aiq": max(figures, key=lambda m: mean(m, "aiq")),
        "cost_to_95": min(figures, key=lambda m: mean(m, "cost_to_95")),
        "cost_to_99": min(figures, key=lambda m: mean(m, "cost_to_99")),
        "accuracy": max(points, key=lambda label: tuple(  # most accurate, then cheapest
            sum(col) / len(points[label]) for col in zip(*points[label], strict=True))),
    }


def verdicts(report: Report, chosen: dict[str, str], cost_margin: float = 0.2) -> list[Verdict]:
    """Compare the chosen methods with the best baseline on the test report."""
    by_name = {s.method: s for s in report.summaries}
    baselines = [s for s in report.summaries if s.kind == "baseline"]
    out = []
    for criterion, method in chosen.items():
        if criterion == "accuracy":
            row = next((r for r in report.rows if r.strategy == method), None)
            value = None if row is None else row.accuracy
            met = value is not None and value > report.best_accuracy
            out.append(Verdict(criterion, method, value, f"single {report.best_single}",
                               report.best_accuracy, met))
            continue
        ours = getattr(by_name[method], criterion) if method in by_name else None
        if criterion == "aiq":
            best = max(baselines, key=lambda s: s.aiq)
            met = ours is not None and ours > best.aiq
            out.append(Verdict(criterion, method, ours, best.method, best.aiq, met))
            continue
        best = min(baselines, key=lambda s: _cost(s, criterion))
        theirs = getattr(best, criterion)
        # strictly cheaper too: nothing is 20% cheaper than a baseline that costs nothing
        met = ours is not None and (theirs is None or ours < theirs
                                    and ours <= (1 - cost_margin) * theirs)
        out.append(Verdict(criterion, method, ours, best.method, theirs, met))
    return out
