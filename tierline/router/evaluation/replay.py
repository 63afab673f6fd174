"""Offline replay: drive a strategy over recorded outcomes, paying recorded token costs.

:func:`prepare_replay` precomputes, per test item and model, the call's cost, its grade,
the extracted answer and the response scorer's evidence, plus the learned estimates;
:func:`run_strategy` then steps a strategy through every item exactly as a tier worker
would, and grades what it accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tierline.router.evaluation.dataset import Item, Prices, call_usd
from tierline.router.learned.answers import EXTRACTORS
from tierline.router.learned.features import hash_texts
from tierline.router.learned.judge import Candidate
from tierline.router.learned.logistic import sigmoid
from tierline.router.learned.training import TrainedRouting, scores_of
from tierline.router.strategies.basic import Strategy
from tierline.router.strategies.steps import Accept, Attempt, Call, RequestView


@dataclass(frozen=True)
class Replay:
    """Recorded outcomes of the test items, arranged for fast replay."""

    models: tuple[str, ...]
    items: Sequence[Item]
    usd: np.ndarray  # (n, m) cost of each call
    scores: np.ndarray  # (n, m) recorded scores
    attempts: list[list[Attempt]]  # [item][model], scored by tierline's response scorer
    plain_attempts: list[list[Attempt]]  # the same, scored without the self-checks
    views: Mapping[str, list[RequestView]]  # estimate source -> one view per item


@dataclass(frozen=True)
class RunResult:
    """Aggregate outcome of one strategy over the replay."""

    accuracy: float
    usd_per_request: float
    escalation_rate: float  # share of requests that made more than one round of calls
    calls_per_request: float
    chains: dict[str, int] = field(default_factory=dict)  # "a>b+c" -> requests


class CachedJudge:
    """Memoises a judge on the attempts' (model, answer, evidence): sweeps revisit states."""

    def __init__(self, judge: object) -> None:
        self.judge = judge
        self.cache: dict[tuple[object, ...], list[Candidate]] = {}

    def candidates(self, attempts: Sequence[Attempt],
                   router_logits: Mapping[str, float]) -> list[Candidate]:
        key = tuple((a.model, a.answer, a.evidence) for a in attempts)
        hit = self.cache.get(key)
        if hit is None:
            hit = self.judge.candidates(attempts, router_logits)  # type: ignore[attr-defined]
            self.cache[key] = hit
        return hit


def prepare_replay(trained: TrainedRouting, items: Sequence[Item], prices: Prices,
                   bands: Sequence[str]) -> Replay:
    """Precompute costs, grades, answers, evidence and the views of every estimate source."""
    models = trained.models
    extract = EXTRACTORS[trained.extractor]
    prompts = [it.prompt for it in items]
    usd = np.array([[call_usd(it.outcomes[m], prices[m]) for m in models] for it in items])
    router_logit = trained.router.logits_rows(hash_texts(prompts, trained.router.config))
    p_router = sigmoid(router_logit)
    if trained.plain_scorer is None:
        raise ValueError("replay needs the baselines' scorer: train with plain=True")
    evidence = np.zeros((len(items), len(models)))
    plain = np.zeros_like(evidence)
    answers: list[list[str | None]] = []
    for j, m in enumerate(models):
        responses = [it.outcomes[m].response for it in items]
        ans = [extract(r) for r in responses]
        answers.append(ans)
        evidence[:, j] = trained.scorer.evidence(m, prompts, responses, ans, router_logit[:, j])
        plain[:, j] = trained.plain_scorer.evidence(m, prompts, responses, ans,
                                                    router_logit[:, j])

    def scored(table: np.ndarray) -> list[list[Attempt]]:
        return [[Attempt(m, items[i].outcomes[m].response, answers[j][i], float(table[i, j]))
                 for j, m in enumerate(models)] for i in range(len(items))]

    p_knn = trained.knn.predict(prompts)
    p_weak = sigmoid(trained.weak_enough.logits_rows(
        hash_texts(prompts, trained.weak_enough.config))[:, 0])

    def views(table: np.ndarray) -> list[RequestView]:
        return [RequestView(it.prompt, {m: float(table[i, j]) for j, m in enumerate(models)},
                            bands[i]) for i, it in enumerate(items)]

    weak_table = np.zeros_like(p_router)
    weak_table[:, models.index(trained.weak)] = p_weak
    sources = {"router": views(p_router), "knn": views(p_knn), "weak_enough": views(weak_table)}
    return Replay(models, items, usd, scores_of(items, models), scored(evidence), scored(plain),
                  sources)


def grade(item: Item, scores_row: np.ndarray, models: Sequence[str], accept: Accept) -> float:
    """Choice: a voted letter against the key, a single response by its recorded score;
    recorded: the recorded score of the response returned."""
    if item.key is not None and accept.aggregate:
        return float(accept.answer == item.key)
    return float(scores_row[models.index(accept.answer_from)])


def run_strategy(strategy: Strategy, replay: Replay, source: str = "router",
                 max_rounds: int = 16, plain: bool = False) -> RunResult:
    """Step ``strategy`` through every replayed item; a request pays for every call it made.
    ``plain``: its answers are scored without the self-checks (a baseline's scorer)."""
    scored = replay.plain_attempts if plain else replay.attempts
    index = {m: j for j, m in enumerate(replay.models)}
    correct = usd = rounds_multi = calls = 0.0
    chains: dict[str, int] = {}
    for i, view in enumerate(replay.views[source]):
        paid: list[Attempt] = []
        chain: list[str] = []
        for _ in range(max_rounds):
            action = strategy.step(view, paid)
            if isinstance(action, Call):
                fresh = [m for m in action.models if m not in {a.model for a in paid}]
                paid.extend(scored[i][index[m]] for m in fresh)
                usd += float(sum(replay.usd[i, index[m]] for m in fresh))
                calls += len(fresh)
                chain.append("+".join(action.models))
                continue
            assert isinstance(action, Accept)
            correct += grade(replay.items[i], replay.scores[i], replay.models, action)
            break
        else:
            raise RuntimeError(f"strategy {strategy!r} did not accept within {max_rounds} rounds")
        rounds_multi += len(chain) > 1
        key = ">".join(chain)
        chains[key] = chains.get(key, 0) + 1
    n = max(len(replay.items), 1)
    return RunResult(correct / n, usd / n, rounds_multi / n, calls / n, chains)
