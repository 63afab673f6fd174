"""`tierline bench routing`: every routing strategy and baseline on recorded outcomes.

Reads a recorded-outcome JSONL (and a prices YAML), trains the learned parts on the train
file (or split), replays every strategy on the test items, and prints the operating points
and each method's frontier (AIQ, cost to 95% / 99% of the best single model's accuracy).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Prices, fold_items, split_items
from tierline.router.evaluation.goal import Verdict, choose_methods, verdicts
from tierline.router.evaluation.methods import Report, Row, evaluate
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.router import save_router
from tierline.router.learned.training import TrainedRouting, train_routing
from tierline.router.live.composite import CompositeEstimator, band_of
from tierline.router.policy import ClassifierSpec
from tierline.training.folds import default_jobs, side_by_side
from tierline.training.inputs import (  # noqa: F401  (the benches read them here too)
    check_priced,
    check_same_shape,
    read_items,
    read_prices,
)

out = Console()
if not out.is_terminal:
    out.width = 150  # piped or redirected: keep the tables on one line per row
err = Console(stderr=True, soft_wrap=True)  # an error stays on one line


def composite_bands(items: Sequence[Item]) -> list[str]:
    """The article's composite estimator (policy defaults) banding every prompt."""
    spec = ClassifierSpec()
    scores = CompositeEstimator(spec).score([it.prompt for it in items],
                                            [dict(it.meta) for it in items])
    return band_of(scores.composite, spec.thresholds)


def _share(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.1%}"


def highlights(rows: Sequence[Row]) -> list[Row]:
    """Per method: its only point, or the cheapest at 95% / 99% and the most accurate."""
    by_method: dict[str, list[Row]] = {}
    for r in rows:
        by_method.setdefault(r.method, []).append(r)
    shown: list[Row] = []
    for group in by_method.values():
        picks = [max(group, key=lambda r: (r.accuracy, -r.usd))]
        for target in (0.95, 0.99):
            ok = [r for r in group if r.accuracy_vs_best >= target]
            if ok:
                picks.append(min(ok, key=lambda r: r.usd))
        shown += sorted({r.strategy: r for r in picks}.values(), key=lambda r: r.usd)
    return shown


def print_report(report: Report, seconds: dict[str, float]) -> None:
    """The operating-point table and the frontier table."""
    out.print(f"best single model: [bold]{escape(report.best_single)}[/bold] accuracy "
              f"{report.best_accuracy:.3f} at ${report.best_usd * 1000:.4f} per 1k requests")
    unit = report.cost_unit or report.best_single
    if unit != report.best_single:
        out.print(f"[yellow]the best single model is free: costs are shares of {escape(unit)}'s USD"
                  "[/yellow]")
    points = Table(title="operating points (swept methods: most accurate, cheapest at 95%/99%)")
    for col in ("strategy", "kind", "accuracy", "acc/best", "USD/1k req", "USD/best", "escal.",
                "calls/req"):
        points.add_column(col, justify="left" if col in ("strategy", "kind") else "right")
    for r in highlights(report.rows):
        points.add_row(r.strategy, r.kind, f"{r.accuracy:.3f}", f"{r.accuracy_vs_best:.1%}",
                       f"{r.usd * 1000:.4f}", f"{r.cost_vs_best:.1%}", f"{r.escalation_rate:.2f}",
                       f"{r.calls_per_request:.2f}")
    out.print(points)
    frontier = Table(title=f"frontiers (costs as share of {unit}'s USD)")
    for col in ("method", "kind", "points", "best acc/best", "AIQ", "cost to 95%", "cost to 99%"):
        frontier.add_column(col, justify="left" if col in ("method", "kind") else "right")
    for s in sorted(report.summaries, key=lambda s: -s.aiq):
        frontier.add_row(s.method, s.kind, str(s.points), f"{s.best_accuracy_vs_best:.1%}",
                         f"{s.aiq:.4f}", _share(s.cost_to_95), _share(s.cost_to_99))
    out.print(frontier)
    out.print("[dim]" + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()) + "[/dim]")


def replay_fold(fit: Sequence[Item], val: Sequence[Item], prices: Prices, seed: int) -> Report:
    """One validation fold: train on ``fit``, replay every planned point on ``val``."""
    return evaluate(train_routing(fit, prices, seed), val, prices, composite_bands(val))


def replay_fold_or_why(fit: Sequence[Item], val: Sequence[Item], prices: Prices, seed: int
                       ) -> Report | str:
    """One validation fold's report, or why the fold is unusable."""
    try:
        return replay_fold(fit, val, prices, seed)
    except InvalidInput as exc:
        return str(exc)


@dataclass(frozen=True)
class Tested:
    """The test run: the learned parts trained on the whole train split, every method
    replayed on the test split."""

    report: Report
    models: tuple[str, ...]  # cheapest first
    trained: TrainedRouting | None  # kept only to be saved
    seconds: dict[str, float]


def train_and_test(train: Sequence[Item], test: Sequence[Item], prices: Prices, seed: int,
                   keep: bool) -> Tested:
    """Train on ``train``, replay every method on ``test``."""
    started = time.perf_counter()
    trained = train_routing(train, prices, seed)
    trained_s = time.perf_counter() - started
    report = evaluate(trained, test, prices, composite_bands(test))
    return Tested(report, tuple(trained.models), trained if keep else None,
                  {"train": trained_s, "evaluate": time.perf_counter() - started - trained_s})


def validate_and_test(train: Sequence[Item], test: Sequence[Item], prices: Prices, seed: int,
                      folds: int, jobs: int | None, keep: bool
                      ) -> tuple[dict[str, str] | None, Tested]:
    """tierline's methods chosen by their mean over ``folds`` folds of train (each in turn
    validates what the rest trained; None: no headline), and the test run. They run side by
    side, the test run first since it is the longest."""
    pairs = fold_items(train, folds, seed + 1) if folds else []
    if pairs and min(min(len(fit), len(val)) for fit, val in pairs) < 20:
        err.print("[dim]train split too small for validation folds; no headline[/dim]")
        pairs = []
    calls: list[Callable[[], Any]] = [partial(train_and_test, train, test, prices, seed, keep)]
    calls += [partial(replay_fold_or_why, fit, val, prices, seed) for fit, val in pairs]
    jobs = jobs or default_jobs(len(calls))
    note = (f"{len(pairs)} validation folds and the test run ({jobs} at a time): {{}} of "
            f"{len(calls)} done" if pairs else
            f"training on {len(train)} items, replaying every method on {len(test)}")
    with err.status(note.format(0)) as status:
        tested, *folded = side_by_side(calls, jobs, lambda n: status.update(note.format(n)))
    unusable = [why for why in folded if isinstance(why, str)]
    if unusable:
        err.print(f"a validation fold is unusable ({unusable[0]}); no headline", style="dim",
                  markup=False, highlight=False)
    if not pairs or unusable:
        return None, tested
    return choose_methods(folded), tested


def print_verdicts(lines: Sequence[Verdict]) -> None:
    """Goal check: methods chosen on validation vs the best baseline on the test split."""
    table = Table(title="goal: chosen on validation vs best baseline on test "
                        "(AIQ larger; cost at least 20% lower; accuracy above the best single)")
    for col in ("criterion", "tierline (chosen on validation)", "value", "best baseline",
                "value", "by", "met"):
        table.add_column(col)
    for v in lines:
        cost = v.criterion.startswith("cost")
        fmt = _share if cost else (lambda x: "none" if x is None else f"{x:.4f}")
        table.add_row(v.criterion, v.method, fmt(v.value), v.baseline, fmt(v.baseline_value),
                      _margin(v, cost), "yes" if v.met else "no")
    out.print(table)


def _margin(v: Verdict, cost: bool) -> str:
    """How far tierline's figure is from the baseline's: cheaper or dearer, or the difference."""
    if v.value is None or v.baseline_value is None:
        return ""
    if not cost:
        return f"{v.value - v.baseline_value:+.4f}"
    if v.baseline_value <= 0:
        return ""
    ratio = 1 - v.value / v.baseline_value
    return f"{ratio:.0%} cheaper" if ratio >= 0 else f"{-ratio:.0%} dearer"


def json_rows(report: Report, chosen: dict[str, str] | None) -> list[dict[str, Any]]:
    """Every operating point, with its method's frontier figures and the goal criteria its
    method (for ``accuracy``: the point itself) was chosen for on the validation folds."""
    summary = {s.method: s for s in report.summaries}
    rows = []
    for r in report.rows:
        s = summary[r.method]
        picked = [c for c, name in (chosen or {}).items()
                  if name == (r.strategy if c == "accuracy" else r.method)]
        rows.append({**r.to_dict(), "best_single": report.best_single,
                     "cost_unit": report.cost_unit or report.best_single, "aiq": s.aiq,
                     "cost_to_95": s.cost_to_95, "cost_to_99": s.cost_to_99,
                     "chosen_for": picked})
    return rows


def plot_frontier(report: Report, path: Path) -> None:
    """Cost-quality points and hulls, one colour per method (matplotlib, Agg)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InvalidInput("--plot needs matplotlib: pip install 'tierline[plot]'") from exc
    from tierline.router.evaluation.frontier import hull

    fig, ax = plt.subplots(figsize=(10, 6.5))
    methods: dict[str, list[Row]] = {}
    for r in report.rows:
        methods.setdefault(r.method, []).append(r)
    colours = plt.get_cmap("tab20")
    for i, (method, group) in enumerate(methods.items()):
        colour = colours(i % 20)
        pts = [(r.cost_vs_best, r.accuracy_vs_best) for r in group]
        if len(group) == 1:
            marker = "x" if group[0].kind == "reference" else "o"
            ax.scatter([pts[0][0]], [pts[0][1]], label=method, marker=marker, s=30, color=colour)
            continue
        line = hull(pts)[1:]
        ax.plot([c for c, _ in line], [q for _, q in line], marker=".", color=colour,
                linestyle="-" if group[0].kind == "tierline" else "--", label=method)
    ax.axhline(0.95, color="grey", linewidth=0.5)
    ax.axhline(0.99, color="grey", linewidth=0.5)
    ax.set_xlabel(f"cost / cost of {report.cost_unit or report.best_single}")
    ax.set_ylabel(f"accuracy / accuracy of {report.best_single}")
    ax.set_ylim(0.5, None)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _live(train: Sequence[Item], test: Sequence[Item], prices: Prices, seed: int, label: str,
          replay_file: Path) -> None:
    """Train, then run one point offline and live; exit 1 when the two disagree."""
    from tierline.bench.live import run_live
    from tierline.config.settings import settings_in_force

    trained = train_routing(train, prices, seed)
    result = run_live(trained, test, prices, label, replay_file, out, settings_in_force())
    table = Table(title=f"{label}: offline replay vs the live pipeline ({result.n} requests)")
    for name in ("run", "accuracy", "USD per request"):
        table.add_column(name, justify="left" if name == "run" else "right")
    table.add_row("offline", f"{result.offline_accuracy:.4f}", f"{result.offline_usd:.8f}")
    table.add_row("live", f"{result.live_accuracy:.4f}", f"{result.live_usd:.8f}")
    out.print(table)
    out.print("match" if result.matches else "[red]MISMATCH[/red]")
    if not result.matches:
        sys.exit(1)


@click.command()
@click.option("--train", "train_path", type=click.Path(path_type=Path), required=True,
              help="recorded-outcome JSONL to train on (and split, without --test)")
@click.option("--test", "test_path", type=click.Path(path_type=Path), default=None,
              help="recorded-outcome JSONL to evaluate on")
@click.option("--prices", "prices_path", type=click.Path(path_type=Path), required=True,
              help="prices YAML: models.<name>.usd_per_1m_input/usd_per_1m_output")
@click.option("--split", type=float, default=0.3, show_default=True,
              help="test fraction taken from --train when --test is omitted")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="write every operating point as a JSON list")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="write the cost-quality frontier as a PNG")
@click.option("--save-bundle", "save_bundle_path", type=click.Path(path_type=Path), default=None,
              help="write every trained part a live cascade needs (<path>.npz + <path>.json)")
@click.option("--folds", type=int, default=5, show_default=True,
              help="validation folds of the train split that choose tierline's headline "
                   "methods (0 skips the choice)")
@click.option("--jobs", type=int, default=None,
              help="validation folds run at once, one process each  [default: one per core]")
@click.option("--save-router", "save_router_path", type=click.Path(path_type=Path), default=None,
              help="write the learned router artifact (<path>.npz + <path>.json)")
@click.option("--live", is_flag=True,
              help="run one operating point through the real pipeline (workers, Redis, "
                   "Postgres, the replay simulator) and compare it with the offline replay")
@click.option("--live-point", default="cascade-2 bar=0.804", show_default=True,
              help="the operating point --live runs (a label from the table's sweeps)")
@click.option("--live-limit", type=int, default=300, show_default=True,
              help="how many test items --live sends through the pipeline")
def command(train_path: Path, test_path: Path | None, prices_path: Path, split: float,
            seed: int, json_path: Path | None, plot_path: Path | None, folds: int,
            jobs: int | None, save_router_path: Path | None, save_bundle_path: Path | None,
            live: bool, live_point: str, live_limit: int) -> None:
    """Compare routing strategies and baselines on recorded outcomes of real models."""
    try:
        if folds == 1 or folds < 0:
            raise InvalidInput(f"--folds must be 0 (no headline) or at least 2, got {folds}")
        if jobs is not None and jobs < 1:
            raise InvalidInput(f"--jobs must be at least 1, got {jobs}")
        prices = read_prices(prices_path)
        items = read_items(train_path)
        check_priced(items, prices, train_path, prices_path)
        if test_path is None:
            train, test = split_items(items, split, seed)
        else:
            train, test = items, read_items(test_path)
            check_same_shape(train, test, train_path, test_path)
        for name, part in (("train", train), ("test", test)):
            if not part:
                raise InvalidInput(f"{train_path}: the {name} split is empty ({len(items)} "
                                   f"items, --split {split})")
        if live:
            _live(train, test[:live_limit], prices, seed, live_point, test_path or train_path)
            return
        started = time.perf_counter()
        chosen, tested = validate_and_test(
            train, test, prices, seed, folds, jobs,
            keep=save_router_path is not None or save_bundle_path is not None)
        report = tested.report
        seconds = {"in all": time.perf_counter() - started, **tested.seconds}
        out.print(f"train {len(train)} items, test {len(test)} items, models (cheapest first): "
                  f"{', '.join(tested.models)}")
        print_report(report, seconds)
        if chosen is not None:
            print_verdicts(verdicts(report, chosen))
        if json_path is not None:
            json_path.write_text(json.dumps(json_rows(report, chosen), indent=1), encoding="utf-8")
        if plot_path is not None:
            plot_frontier(report, plot_path)
        if tested.trained is not None and save_router_path is not None:
            save_router(tested.trained.router, save_router_path)
        if tested.trained is not None and save_bundle_path is not None:
            save_bundle(bundle_of(tested.trained), save_bundle_path)
    except InvalidInput as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)
