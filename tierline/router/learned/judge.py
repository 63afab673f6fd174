"""The judge: P(candidate answer is right | prompt, every response paid for so far).

Candidates are the distinct extracted answers among the attempts (a response with no
answer is a candidate of its own). Each candidate is described by its supporters' and its
rivals' evidence (the response scorer's logits), the learned router's logits and which
models back it; a small dense logistic model, trained on simulated states from the train
split, turns that into a probability. Two cheap models agreeing is strong evidence, and the
judge learns how strong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tierline.router.learned.logistic import fit_dense, logit1, sigmoid1
from tierline.router.strategies.steps import Attempt

N_SHARED = 8


@dataclass(frozen=True)
class Candidate:
    """One possible final answer and the judge's probability that it is right."""

    answer: str | None
    answer_from: str  # the supporter whose response would be returned
    supporters: tuple[str, ...]
    confidence: float

    @property
    def aggregate(self) -> bool:
        """Whether more than one response backs this answer."""
        return len(self.supporters) > 1


def group_candidates(attempts: Sequence[Attempt]) -> list[list[Attempt]]:
    """Attempts grouped by extracted answer; a missing answer stands alone."""
    groups: dict[str, list[Attempt]] = {}
    for a in attempts:
        key = a.answer if a.answer is not None else f"\0none:{a.model}"
        groups.setdefault(key, []).append(a)
    return list(groups.values())


def candidate_features(models: Sequence[str], group: Sequence[Attempt],
                       attempts: Sequence[Attempt], router_logits: Mapping[str, float]) -> (
    np.ndarray
):
    """The dense description of one candidate within a state."""
    ids = {a.model for a in group}
    rivals = [a for a in attempts if a.model not in ids and a.answer is not None]
    ev = [a.evidence for a in group]
    rev = [a.evidence for a in rivals]
    shared = [
        max(ev), sum(ev) / len(ev), max(router_logits.get(a.model, 0.0) for a in group),
        len(group) - 1.0, float(len(rivals)), max(rev) if rev else 0.0, float(bool(rivals)),
        float(group[0].answer is None),
    ]
    member = [float(m in ids) for m in models]
    rival = [float(any(a.model == m for a in rivals)) for m in models]
    return np.array(shared + member + rival)


@dataclass(frozen=True)
class Judge:
    """Scores the candidates of a state; ``models`` fixes the one-hot columns."""

    models: tuple[str, ...]
    weights: np.ndarray
    bias: float

    def candidates(self, attempts: Sequence[Attempt],
                   router_logits: Mapping[str, float]) -> list[Candidate]:
        """Every candidate, most confident first."""
        out = []
        for group in group_candidates(attempts):
            x = candidate_features(self.models, group, attempts, router_logits)
            p = sigmoid1(float(x @ self.weights) + self.bias)
            best = max(group, key=lambda a: a.evidence)
            out.append(Candidate(group[0].answer, best.model,
                                 tuple(a.model for a in group), p))
        return sorted(out, key=lambda c: -c.confidence)


@dataclass(frozen=True)
class LastResponseJudge:
    """FrugalGPT's scorer: trust only the latest response's own evidence."""

    def candidates(self, attempts: Sequence[Attempt],
                   router_logits: Mapping[str, float]) -> list[Candidate]:
        last = attempts[-1]
        return [Candidate(last.answer, last.model, (last.model,),
                          sigmoid1(last.evidence))]


def router_logit_map(models: Sequence[str], p_correct: Mapping[str, float]) -> dict[str, float]:
    """Learned-router probabilities as logits, the judge's input."""
    return {m: logit1(p_correct[m]) for m in models if m in p_correct}


def train_judge(models: Sequence[str], states: Sequence[Sequence[Attempt]],
                router_logits: Sequence[Mapping[str, float]],
                labels_of: Sequence[Mapping[str, float]], l2: float = 1e-3) -> Judge:
    """Fit on simulated states; ``labels_of[s][answer_from]`` is the right-ness of a candidate.

    The label of a candidate is looked up by its answer (``str``) when the key is present,
    else by its representative model — choice sets grade letters, recorded sets responses.
    """
    xs, ys = [], []
    for attempts, logits, labels in zip(states, router_logits, labels_of, strict=True):
        for group in group_candidates(attempts):
            xs.append(candidate_features(models, group, attempts, logits))
            best = max(group, key=lambda a: a.evidence)
            answer = group[0].answer
            ys.append(labels[answer] if len(group) > 1 and answer in labels and answer is not None
                      else labels[best.model])
    if not xs:
        raise ValueError("judge: no training states")
    w, b = fit_dense(np.array(xs), np.array(ys, dtype=np.float64), l2=l2)
    return Judge(tuple(models), w, b)
