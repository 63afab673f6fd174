"""Train every learned part of routing from a train split of recorded outcomes.

The learned router and the response scorer are cross-fitted over two folds so that the
judge is trained on out-of-fold evidence (as it will see at test time); the served models
are the mean of the two fold models (linear models, so the mean is a model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.baselines import KnnRouter, train_knn, train_weak_enough
from tierline.router.evaluation.dataset import Item, Prices, mean_usd_per_call, models_of
from tierline.router.learned.answers import EXTRACTOR_FOR_GRADER, EXTRACTORS
from tierline.router.learned.confidence import (
    ResponseScorer,
    average_scorers,
    train_response_scorer,
)
from tierline.router.learned.cost_model import CostModel, fit_cost_model
from tierline.router.learned.features import DEFAULT_HASHING, hash_texts
from tierline.router.learned.judge import Judge, train_judge
from tierline.router.learned.logistic import DEFAULT_FIT, FitConfig, sigmoid
from tierline.router.learned.lookahead import Lookahead, train_lookahead
from tierline.router.learned.router import LearnedRouter, train_learned_router
from tierline.router.strategies.steps import Attempt

N_SWEEP = 28  # operating points of a swept method
MAX_STATES_PER_ITEM = 16
LOOKAHEAD_PER_ITEM = 8


@dataclass(frozen=True)
class TrainedRouting:
    """Everything the strategies and baselines need, fitted on the train split only."""

    models: tuple[str, ...]  # cheapest first
    usd_per_call: dict[str, float]
    train_accuracy: dict[str, float]
    extractor: str
    router: LearnedRouter
    scorer: ResponseScorer
    plain_scorer: ResponseScorer | None  # without the self-checks: the baselines'; None
    # when trained for a bundle only
    judge: Judge
    weak_enough: LearnedRouter
    weak_enough_grid: tuple[float, ...]  # its thresholds: quantiles of P on the train split
    weak: str
    strong: str
    knn: KnnRouter
    lookahead: Lookahead
    costs: CostModel


def scores_of(items: Sequence[Item], models: Sequence[str]) -> np.ndarray:
    """Recorded scores (n_items, n_models)."""
    return np.array([[it.outcomes[m].score for m in models] for it in items], dtype=np.float64)


def _mean_router(a: LearnedRouter, b: LearnedRouter) -> LearnedRouter:
    return LearnedRouter(a.models, a.usd_per_1m, a.config, (a.weights + b.weights) / 2,
                         (a.bias + b.bias) / 2)


@lru_cache(maxsize=8)
def _subsets(n_models: int) -> tuple[tuple[int, ...], ...]:
    """Every non-empty subset of the model columns (enumerated once per model count)."""
    return tuple(c for r in range(1, n_models + 1) for c in combinations(range(n_models), r))


@lru_cache(maxsize=8)
def _call_pairs(n_models: int) -> tuple[tuple[tuple[int, ...], int], ...]:
    """(called columns, next column) for every state of at most two calls."""
    return tuple((c, m) for r in range(0, min(2, n_models - 1) + 1)
                 for c in combinations(range(n_models), r) for m in range(n_models) if m not in c)


def strong_model(models: Sequence[str], accuracy: dict[str, float]) -> str:
    """The top of a cheap-to-strong chain: the most accurate model other than the cheapest
    (ties go to the cheaper); ``models`` are cheapest first. A pricier, less accurate model
    is never the top, whatever its price."""
    rest = list(models[1:]) or list(models)
    return max(rest, key=lambda m: (accuracy[m], -rest.index(m)))


def _states(n_models: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Model subsets (as column tuples) the judge learns from: all, or a sample."""
    every = _subsets(n_models)
    if len(every) <= MAX_STATES_PER_ITEM:
        return list(every)
    chosen = rng.choice(len(every), MAX_STATES_PER_ITEM, replace=False)
    return [every[i] for i in chosen]


def _lookahead_states(n_models: int, rng: np.random.Generator) -> list[tuple[tuple[int, ...], int]]:
    """(called columns, next column) pairs: states of at most two calls, a sample per item."""
    pairs = _call_pairs(n_models)
    if len(pairs) <= LOOKAHEAD_PER_ITEM:
        return list(pairs)
    return [pairs[i] for i in rng.choice(len(pairs), LOOKAHEAD_PER_ITEM, replace=False)]


def train_routing(items: Sequence[Item], prices: Prices, seed: int = 0,
                  fit: FitConfig = DEFAULT_FIT, plain: bool = True) -> TrainedRouting:
    """Fit the learned router, response scorer, judge and the baselines' models; without
    ``plain``, not the baseline's own response scorer (a bundle does not need it)."""
    if not items:
        raise InvalidInput("the train split is empty")
    models = models_of(items, prices)
    kind = items[0].grader_kind
    if kind not in EXTRACTOR_FOR_GRADER:
        raise InvalidInput(f"grader kind {kind!r} is not supported "
                           f"(known: {', '.join(EXTRACTOR_FOR_GRADER)})")
    extract = EXTRACTORS[EXTRACTOR_FOR_GRADER[kind]]
    rng = np.random.default_rng(seed)
    prompts = [it.prompt for it in items]
    scores = scores_of(items, models)
    usd = mean_usd_per_call(items, models, prices)
    rows = hash_texts(prompts, DEFAULT_HASHING)
    folds = rng.permutation(len(items)) % 2
    parts = [np.flatnonzero(folds == f) for f in (0, 1)]
    if min(len(p) for p in parts) == 0:
        parts = [np.arange(len(items))] * 2
    prices_used = {m: (float(prices[m][0]), float(prices[m][1])) for m in models}
    oof_logits = np.zeros_like(scores)
    fold_routers = []
    for f in (0, 1):
        fit_on, score_on = parts[1 - f], parts[f]
        r = train_learned_router([prompts[i] for i in fit_on], scores[fit_on], models,
                                 prices_used, fit=fit, rows=rows.take(fit_on))
        oof_logits[score_on] = r.logits_rows(rows.take(score_on))
        fold_routers.append(r)
    responses = [[it.outcomes[m].response for it in items] for m in models]
    answers = [[extract(r) for r in resp] for resp in responses]
    evidence = np.zeros_like(scores)
    fold_scorers, plain_scorers = [], []
    for f in (0, 1):
        fit_on, score_on = parts[1 - f], parts[f]
        fold = ([prompts[i] for i in fit_on], [[resp[i] for i in fit_on] for resp in responses],
                [[ans[i] for i in fit_on] for ans in answers], scores[fit_on], oof_logits[fit_on])
        s = train_response_scorer(models, *fold, fit=fit)
        if plain:
            plain_scorers.append(train_response_scorer(models, *fold, fit=fit, checks=False))
        for j, m in enumerate(models):
            evidence[score_on, j] = s.evidence(m, [prompts[i] for i in score_on],
                                               [responses[j][i] for i in score_on],
                                               [answers[j][i] for i in score_on],
                                               oof_logits[score_on, j])
        fold_scorers.append(s)
    states, logits_of, labels_of = [], [], []
    logits_of_item, labels_of_item = [], []
    for i, it in enumerate(items):
        logit_map = {m: float(oof_logits[i, j]) for j, m in enumerate(models)}
        labels: dict[str, float] = {m: float(scores[i, j]) for j, m in enumerate(models)}
        if it.key is not None:
            labels.update({str(a[i]): float(a[i] == it.key) for a in answers if a[i] is not None})
        logits_of_item.append(logit_map)
        labels_of_item.append(labels)
        for subset in _states(len(models), rng):
            states.append([Attempt(models[j], "", answers[j][i], float(evidence[i, j]))
                           for j in subset])
            logits_of.append(logit_map)
            labels_of.append(labels)
    judge = train_judge(models, states, logits_of, labels_of)
    look_rows = []
    for i in range(len(items)):
        attempts = [Attempt(m, "", answers[j][i], float(evidence[i, j]))
                    for j, m in enumerate(models)]
        for called, nxt in _lookahead_states(len(models), rng):
            state = [attempts[j] for j in called]
            ranked = judge.candidates(state, logits_of_item[i]) if state else []
            after = judge.candidates([*state, attempts[nxt]], logits_of_item[i])[0]
            labels = labels_of_item[i]
            key = after.answer if after.aggregate and after.answer in labels else after.answer_from
            look_rows.append((ranked, len(state), {a.model for a in state}, models[nxt],
                              logits_of_item[i], labels[key]))
    lookahead = train_lookahead(models, look_rows)
    accuracy = {m: float(scores[:, j].mean()) for j, m in enumerate(models)}
    weak, strong = models[0], strong_model(models, accuracy)
    weak_enough = train_weak_enough(prompts, scores[:, models.index(weak)],
                                    scores[:, models.index(strong)], weak, strong, fit, rows)
    # The threshold sweep spans the training prompts' P(weak is enough), evenly by share.
    p_weak = sigmoid(weak_enough.logits_rows(rows)[:, 0])
    weak_enough_grid = tuple(float(t) for t in np.quantile(p_weak, np.linspace(0, 1, N_SWEEP)))
    return TrainedRouting(
        tuple(models), usd, accuracy, EXTRACTOR_FOR_GRADER[kind],
        _mean_router(*fold_routers), average_scorers(fold_scorers),
        average_scorers(plain_scorers) if plain_scorers else None,
        judge,
        weak_enough, weak_enough_grid, weak, strong, train_knn(prompts, scores), lookahead,
        fit_cost_model(
            models, np.array([len(p) for p in prompts]),
            np.array([[it.outcomes[m].prompt_tokens for m in models] for it in items]),
            np.array([[it.outcomes[m].completion_tokens for m in models] for it in items]),
            np.array([[len(it.outcomes[m].response) for m in models] for it in items]),
            prices_used),
    )
