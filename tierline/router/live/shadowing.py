"""Live shadow evaluation, the pure part: which requests are shadowed, to which models, and
how a shadow answer is graded.

A request is sampled by its id alone (a hash, not a random draw), so a redelivered bundle
makes the same choice. Its answer is graded against the top tier's with what production can
see: the extracted answer (a choice letter, a number) or else the normalised text, as the
``agreement`` strategy compares them (tierline.router.strategies.agreement); with a gold label (a
classification job's), each answer is also graded against it. With ``grader: judge`` the
given answer is graded by a judge model instead: :func:`judge_prompt` asks it, as a
two-label classification, whether the answer gives the top tier's final answer, and
:func:`verdict` reads its reply (None when unreadable: the extracted answers decide).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from tierline.router.learned.answers import extract_auto
from tierline.router.policy import LearningSpec, Policy
from tierline.router.strategies.agreement import normalised

_SCALE = float(2**64)
JUDGE_LABELS = ("same", "different")
JUDGE_MAX_OUTPUT_TOKENS = 8  # the reply is one label
JUDGE_SHOWN_CHARS = 6000  # of the question and of each answer: a judge call stays small


def sample_point(request_id: str) -> float:
    """Where a request falls in [0, 1): the same for the same id, in any process."""
    digest = hashlib.sha256(f"shadow:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def rate_now(shadow_rate: float, warm_rate: float | None, warm_records: int, records: int
             ) -> float:
    """The shadow rate in force: ``warm_rate`` (when higher) while fewer than
    ``warm_records`` requests have been shadowed, then ``shadow_rate``."""
    if warm_rate is None or records >= warm_records:
        return shadow_rate
    return max(shadow_rate, warm_rate)


def sampled(request_id: str, lane: str, spec: LearningSpec, records: int | None = None
            ) -> bool:
    """Whether this request is shadowed: its lane is named and it falls in the sample
    (the warm-up rate while fewer than ``spec.warm_records`` requests, ``records``, are
    shadowed)."""
    rate = spec.shadow_rate if records is None else rate_now(
        spec.shadow_rate, spec.warm_shadow_rate, spec.warm_records, records)
    return lane in spec.lanes and sample_point(request_id) < rate


def shadow_models(policy: Policy, answered_by: str, spec: LearningSpec) -> list[str]:
    """The models a shadowed request is also sent to: the top tier's preferred model, or each
    tier's (``tiers: all``), less the model that answered it."""
    if spec.tiers == "all":
        wanted = [models[0] for models in policy.tiers.values()]
    else:
        wanted = [policy.top_model()]
    return [m for m in wanted if m != answered_by]


def answer_of(text: str | None) -> str | None:
    """What an answer is compared by: the extracted answer, else the normalised text; None
    for an empty or missing answer, which agrees with nothing."""
    if not text:
        return None
    return extract_auto(text) or normalised(text) or None


def agrees(answer: str | None, reference: str | None) -> bool | None:
    """Whether an answer is the reference answer; None when there is no reference."""
    if reference is None:
        return None
    return answer is not None and answer == reference


def gold_agrees(answer: str | None, gold: str | None) -> bool | None:
    """Whether an answer is the gold label (case and edge punctuation ignored); None without
    a gold label."""
    if gold is None:
        return None
    return answer is not None and normalised(answer) == normalised(gold)


@dataclass(frozen=True)
class Graded:
    """One model's answer to a shadowed request, graded."""

    model: str
    answer: str | None
    agrees_with_top: bool | None
    agrees_with_gold: bool | None


def grade(answers: Sequence[tuple[str, str | None]], top: str, gold: str | None
          ) -> list[Graded]:
    """Grade each ``(model, response text)`` against the ``top`` model's answer (itself
    included: it agrees when it answered) and the gold label."""
    extracted = [(model, answer_of(text)) for model, text in answers]
    reference = dict(extracted).get(top)
    return [Graded(model, answer, agrees(answer, reference), gold_agrees(answer, gold))
            for model, answer in extracted]


def judge_prompt(question: str, answer: str, reference: str) -> str:
    """What the judge model is asked: do the two answers give the same final answer?
    Shaped as a classification (a ``Labels:`` line, then ``Text:``), which the simulator and
    any instruction-following model answer with one label."""
    cut = JUDGE_SHOWN_CHARS
    return (f"Labels: {', '.join(JUDGE_LABELS)}\n"
            "Do answer A and answer B give the same final answer to the question? "
            "Reply with one label only.\n"
            f"Text: Question: {question[:cut]}\n\nAnswer A: {answer[:cut]}\n\n"
            f"Answer B: {reference[:cut]}\nLabel:")


def verdict(reply: str | None) -> bool | None:
    """The judge's reply read: True for ``same``, False for ``different``, None otherwise."""
    said = normalised(reply or "")
    if said == JUDGE_LABELS[0]:
        return True
    if said == JUDGE_LABELS[1]:
        return False
    return None


def judged(graded: Sequence[Graded], model: str, agrees_with_top: bool | None
           ) -> list[Graded]:
    """``graded`` with ``model``'s agreement set by the judge (unchanged when it gave none)."""
    if agrees_with_top is None:
        return list(graded)
    return [Graded(g.model, g.answer, agrees_with_top, g.agrees_with_gold) if g.model == model
            else g for g in graded]
