"""Offline evaluation: every strategy and baseline on replayed outcomes, with frontiers.

Pure: it receives parsed items, prices and complexity bands, and returns rows and
per-method summaries (AIQ, cost to reach 95% / 99% of the best single model's accuracy);
the CLI in ``tierline/bench/routing.py`` reads files and prints.

Methods (tiers = ``k`` models in price order: the cheapest, the strong model — the most
accurate of the others — and the most accurate priced between them; a model pricier than
the strong one is never a tier):
single models, oracle (cheapest right model), random model, ``perfect judge`` (the cheapest
and the most accurate model as a 2-tier cascade whose judge knows the grade: the ceiling of
any scorer on that chain), ``composite`` (the article's
bands onto 3 tiers), ``learned`` (max P - lambda x cost share), ``cascade-k`` (judge bar swept),
``cascade-k+skip`` (middle tiers skipped when learned P < 0.6), ``value-k`` (call the model
with the best expected accuracy gain per cost while it clears a swept threshold),
``value-k$`` (the same with per-request cost estimates), ``parallel`` / ``parallel+judge``
(top-k by train accuracy, vote or judge), ``hybrid`` (cheapest, then the strongest with the
next-best no pricier than it in parallel); baselines ``knn (RouterBench)``, ``routellm``,
``frugalgpt``; ``untrained`` (:mod:`tierline.router.strategies.agreement`: cheap panels that
must agree, no
training). Baselines score answers as the published methods do, without tierline's
self-checks (:mod:`tierline.router.learned.arithmetic`); the reference ``frugalgpt, tierline's
scorer`` is the
FrugalGPT-style cascade given them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Prices
from tierline.router.evaluation.frontier import aiq, cost_to_reach
from tierline.router.evaluation.replay import (
    CachedJudge,
    Replay,
    RunResult,
    prepare_replay,
    run_strategy,
)
from tierline.router.learned.judge import LastResponseJudge
from tierline.router.learned.training import TrainedRouting, strong_model
from tierline.router.strategies.agreement import Agreement
from tierline.router.strategies.basic import (
    BandRoute,
    Cascade,
    LearnedPick,
    Parallel,
    SingleModel,
    Strategy,
    TwoModelThreshold,
)
from tierline.router.strategies.value_cascade import ValueCascade

# Sweeps: the same density for every method, so no frontier is coarser than another's.
BARS = tuple(float(x) for x in np.round(np.linspace(0.3, 0.98, 28), 3))
COST_WEIGHTS = (0.0, *(float(x) for x in np.round(np.geomspace(0.005, 3.0, 27), 4)))
SKIP_BAR = 0.6  # tuned on a validation slice carved from MMLU-Pro's train part only
GAINS_PER_COST = tuple(float(x) for x in np.round(np.geomspace(0.005, 3.0, 28), 4))
BANDS = ("low", "mid", "high")
CEILINGS = ("oracle", "perfect judge")  # know the grades; left out of the AIQ's cost range


@dataclass(frozen=True)
class Row:
    """One operating point of one method."""

    strategy: str
    method: str
    kind: str  # reference | tierline | baseline
    accuracy: float
    usd: float  # mean USD per request
    accuracy_vs_best: float
    cost_vs_best: float
    escalation_rate: float
    calls_per_request: float
    top_chain: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Summary:
    """One method's frontier figures; costs are shares of the best single model's USD."""

    method: str
    kind: str
    points: int
    best_accuracy_vs_best: float
    aiq: float
    cost_to_95: float | None
    cost_to_99: float | None


@dataclass(frozen=True)
class Report:
    """Rows, summaries and the reference they are measured against."""

    rows: list[Row]
    summaries: list[Summary]
    best_single: str
    best_accuracy: float
    best_usd: float
    cost_unit: str = ""  # the single model whose USD is 100%: the best, unless it is free


@dataclass(frozen=True)
class Point:
    """A planned operating point: which strategy, reading which estimates."""

    label: str
    method: str
    kind: str
    strategy: Strategy
    source: str = "router"


def tier_subset(models: Sequence[str], accuracy: dict[str, float], n_tiers: int) -> tuple[
    str, ...
] | None:
    """``n_tiers`` models in price order (``models`` are cheapest first): the cheapest, the
    strong model (:func:`strong_model`), and the most accurate of the ones priced between;
    None when fewer models are priced up to the strong one than there are tiers."""
    if n_tiers < 2 or len(models) < 2:
        return None
    top = strong_model(models, accuracy)
    chain = list(models[: models.index(top) + 1])
    if n_tiers > len(chain):
        return None
    middle = sorted(chain[1:-1], key=lambda m: -accuracy[m])[: n_tiers - 2]
    return tuple(m for m in chain if m in {chain[0], top, *middle})


def band_models(models: Sequence[str], accuracy: dict[str, float]) -> dict[str, str]:
    """Bands low/mid/high onto the 3-tier subset (or 2 tiers: low and mid share)."""
    tiers = tier_subset(models, accuracy, 3) or tier_subset(models, accuracy, 2) or (models[0],)
    spread = {1: (0, 0, 0), 2: (0, 0, 1), 3: (0, 1, 2)}[len(tiers)]
    return {band: tiers[spread[i]] for i, band in enumerate(BANDS)}


def plan(trained: TrainedRouting) -> list[Point]:
    """Every method's operating points."""
    models, acc, usd = trained.models, trained.train_accuracy, trained.usd_per_call
    judge = CachedJudge(trained.judge)
    points = [Point(f"single {m}", f"single {m}", "reference", SingleModel(m)) for m in models]
    points.append(Point("composite bands", "composite", "tierline",
                        BandRoute(band_models(models, acc))))
    points += untrained_points(models)
    points += [Point(f"learned λ={w}", "learned", "tierline", LearnedPick(models, usd, None, w))
               for w in COST_WEIGHTS]
    for k in (2, 3, 4):
        tiers = tier_subset(models, acc, k)
        if tiers is None:
            continue
        points += [Point(f"cascade-{k} bar={b}", f"cascade-{k}", "tierline",
                         Cascade(tiers, judge, b)) for b in BARS]
        if k > 2:  # learned P(correct) skips weak middle tiers
            points += [Point(f"cascade-{k}+skip bar={b}", f"cascade-{k}+skip", "tierline",
                             Cascade(tiers, judge, b, skip_bar=SKIP_BAR)) for b in BARS]
        points += [Point(f"value-{k} δ={d}", f"value-{k}", "tierline",
                         ValueCascade(tiers, judge, trained.lookahead, usd, d))
                   for d in GAINS_PER_COST]
        # the same, pricing each call for this request (its prompt and the answers so far)
        points += [Point(f"value-{k}$ δ={d}", f"value-{k}$", "tierline",
                         ValueCascade(tiers, judge, trained.lookahead, usd, d,
                                      costs=trained.costs)) for d in GAINS_PER_COST]
    ranked = sorted(models, key=lambda m: -acc[m])
    for k in range(2, len(models) + 1):
        points.append(Point(f"parallel top-{k} vote", "parallel", "tierline",
                            Parallel(tuple(ranked[:k]), usd)))
        points.append(Point(f"parallel top-{k} judge", "parallel+judge", "tierline",
                            Parallel(tuple(ranked[:k]), usd, judge)))
    # The most accurate other model verifies, if it costs no more than the strong one.
    verifier = [m for m in ranked if m not in (trained.weak, trained.strong)
                and usd[m] <= usd[trained.strong]]
    if verifier:
        tiers = (trained.weak, trained.strong)
        points += [Point(f"hybrid bar={b}", "hybrid", "tierline",
                         Cascade(tiers, judge, b, verify_with=(verifier[0],))) for b in BARS]
    points += [Point(f"knn λ={w}", "knn (RouterBench)", "baseline",
                     LearnedPick(models, usd, None, w), "knn") for w in COST_WEIGHTS]
    points += [Point(f"routellm t={t:.4g}", "routellm", "baseline",
                     TwoModelThreshold(trained.weak, trained.strong, t), "weak_enough")
               for t in trained.weak_enough_grid]
    frugal = CachedJudge(LastResponseJudge())
    points += [Point(f"frugalgpt bar={b}", "frugalgpt", "baseline",
                     Cascade((trained.weak, trained.strong), frugal, b)) for b in BARS]
    # The same baseline reading tierline's response scorer: how much is the scorer's.
    points += [Point(f"frugalgpt+checks bar={b}", "frugalgpt, tierline's scorer", "reference",
                     Cascade((trained.weak, trained.strong), frugal, b)) for b in BARS]
    return points


def untrained_points(models: Sequence[str]) -> list[Point]:
    """The zero-training default over every model by price (it knows nothing else): panels
    of the 1, 2 and 3 cheapest, each escalating to any pricier model (a panel of one with
    its checks plain or strict), and its ends, the cheapest or the top alone;
    ``agree-2>top`` is the production template's (``agree-1>top`` with two models)."""
    tiers = tuple(models)
    points = [Point("untrained cheapest alone", "untrained", "untrained", SingleModel(tiers[0])),
              Point("untrained top alone", "untrained", "untrained", Agreement(tiers, 0))]
    for panel in (1, 2, 3):
        for target in tiers[panel:]:
            name = "top" if target == tiers[-1] else target
            points.append(Point(f"untrained agree-{panel}>{name}", "untrained", "untrained",
                                Agreement(tiers, panel, target)))
            if panel == 1:
                points.append(Point(f"untrained agree-1>{name} strict", "untrained",
                                    "untrained", Agreement(tiers, 1, target, strict=True)))
    return points


def _oracle(replay: Replay) -> RunResult:
    """Cheapest correct model per item (the cheapest model when none is right)."""
    order = np.argsort(replay.usd, axis=1, kind="stable")
    right = np.take_along_axis(replay.scores >= 1.0, order, axis=1)
    first = np.where(right.any(axis=1), right.argmax(axis=1), 0)
    chosen = order[np.arange(len(order)), first]
    rows = np.arange(len(order))
    return RunResult(float(replay.scores[rows, chosen].mean()),
                     float(replay.usd[rows, chosen].mean()), 0.0, 1.0)


def _perfect_judge(replay: Replay, weak: str, strong: str) -> list[RunResult]:
    """Weak alone, and weak escalating exactly the items it gets wrong to strong; the hull
    between the two is every escalation share of a judge that knows the grade."""
    w, s = replay.models.index(weak), replay.models.index(strong)
    wrong = replay.scores[:, w] < 1.0
    alone = RunResult(float(replay.scores[:, w].mean()), float(replay.usd[:, w].mean()), 0.0, 1.0)
    escalated = RunResult(float(np.where(wrong, replay.scores[:, s], replay.scores[:, w]).mean()),
                          float((replay.usd[:, w] + wrong * replay.usd[:, s]).mean()),
                          float(wrong.mean()), float(1 + wrong.mean()))
    return [alone, escalated]


def evaluate(trained: TrainedRouting, items: Sequence[Item], prices: Prices,
             bands: Sequence[str]) -> Report:
    """Run every planned point on the test items and summarise each method's frontier."""
    replay = prepare_replay(trained, items, prices, bands)
    results: list[tuple[Point, RunResult]] = [
        (p, run_strategy(p.strategy, replay, p.source, plain=p.kind == "baseline"))
        for p in plan(trained)
    ]
    singles = {p.method: r for p, r in results if p.kind == "reference"}
    best_name, best = max(singles.items(), key=lambda kv: (kv[1].accuracy, -kv[1].usd_per_request))
    if best.accuracy <= 0:
        raise InvalidInput(f"no model answers any of the {len(items)} evaluation items right: "
                           "accuracy shares are undefined")
    # Costs are shares of the best model's USD; when it is free, of the priciest model's.
    unit_name, unit = (best_name, best) if best.usd_per_request > 0 else max(
        singles.items(), key=lambda kv: kv[1].usd_per_request)
    if unit.usd_per_request <= 0:
        raise InvalidInput("every model's recorded calls cost $0 at these prices: "
                           "there is no cost to route on")
    random = RunResult(float(replay.scores.mean()), float(replay.usd.mean()), 0.0, 1.0)
    extra = [(Point("oracle (cheapest right)", "oracle", "reference", SingleModel("")),
              _oracle(replay)),
             (Point("random model", "random", "reference", SingleModel("")), random)]
    # Random routing between the cheapest and the best model: the line between the two.
    cheapest = f"single {trained.models[0]}"
    extra += [(Point(f"random {name}", "random cheapest/best", "reference", SingleModel("")),
               singles[name]) for name in dict.fromkeys((cheapest, best_name))]
    extra += [(Point(f"perfect judge {trained.weak}>{trained.strong} ({i})", "perfect judge",
                     "reference", SingleModel("")), r)
              for i, r in enumerate(_perfect_judge(replay, trained.weak, trained.strong))]
    rows = [
        Row(p.label, p.method, p.kind, r.accuracy, r.usd_per_request,
            r.accuracy / best.accuracy, r.usd_per_request / unit.usd_per_request,
            r.escalation_rate, r.calls_per_request,
            max(r.chains, key=r.chains.__getitem__) if r.chains else "")
        for p, r in results + extra
    ]
    return Report(rows, summarise(rows), best_name.removeprefix("single "),
                  best.accuracy, best.usd_per_request, unit_name.removeprefix("single "))


def summarise(rows: Sequence[Row]) -> list[Summary]:
    """AIQ and cost to 95% / 99% of the best single accuracy, per method (costs as shares)."""
    max_cost = max(r.cost_vs_best for r in rows if r.method not in CEILINGS)
    methods: dict[str, list[Row]] = {}
    for r in rows:
        methods.setdefault(r.method, []).append(r)
    out = []
    for method, group in methods.items():
        pts = [(r.cost_vs_best, r.accuracy_vs_best) for r in group]
        out.append(Summary(method, group[0].kind, len(group), max(q for _, q in pts),
                           aiq(pts, max_cost), cost_to_reach(pts, 0.95), cost_to_reach(pts, 0.99)))
    return out

