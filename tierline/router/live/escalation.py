"""Live cascades: is this answer good enough, and where does the request go if not.

A judge reads a prompt and a response received and returns the probability that the
answer is right, or None when it cannot tell (free text with nothing definite to check).
The tier worker escalates while that is below the policy's ``strategy.confidence_bar`` and
a more capable tier exists. Judges are a one-method Protocol and a dict, chosen by the
policy's ``strategy.options.judge``:

- ``labels``: classification prompts (a ``Labels:`` line): how cleanly the answer names
  exactly one of the labels (:func:`tierline.router.learned.labels.prompt_confidence`).
- ``answer``: prompts with a definite answer (a choice letter or a number): whether one can
  be extracted at all. A weak signal, but a free one.
- ``auto`` (default): ``labels`` for classification prompts, else ``answer``.

The trained judges of :mod:`tierline.router.learned.judge` score responses the same way offline;
this
module keeps the free, untrained ones the live pipeline can always use.
"""

from __future__ import annotations

from collections.abc import Callable

from tierline.router.errors import PolicyError
from tierline.router.learned.answers import extract_auto
from tierline.router.learned.labels import labels_of_prompt, prompt_confidence
from tierline.router.policy import Policy

Judge = Callable[[str, str], float | None]  # (prompt, response) -> P(right) or None

NO_ANSWER_CONFIDENCE = 0.2  # asked for a definite answer, got none: likely wrong


def judge_labels(prompt: str, response: str) -> float | None:
    """Label confidence for classification prompts; None for others."""
    return prompt_confidence(prompt, response)


def asks_definite_answer(prompt: str) -> bool:
    """Whether a prompt asks for a definite answer (a choice letter, a number): a
    multiple-choice or arithmetic prompt, i.e. one whose own text yields an answer form."""
    return extract_auto(prompt) is not None or "answer" in prompt.lower()


def judge_answer(prompt: str, response: str) -> float | None:
    """1.0 when a definite answer (letter, number) can be read from the response, else low.

    Prompts that ask for no definite answer (:func:`asks_definite_answer`) cannot be judged
    this way.
    """
    if not asks_definite_answer(prompt):
        return None
    return 1.0 if extract_auto(response) is not None else NO_ANSWER_CONFIDENCE


def judge_auto(prompt: str, response: str) -> float | None:
    """``labels`` for classification prompts, else ``answer``."""
    if labels_of_prompt(prompt) is not None:
        return judge_labels(prompt, response)
    return judge_answer(prompt, response)


JUDGES: dict[str, Judge] = {"labels": judge_labels, "answer": judge_answer, "auto": judge_auto}


def judge_for(policy: Policy) -> Judge | None:
    """The policy's judge when its strategy escalates (cascade, hybrid), else None."""
    if policy.strategy.kind not in ("cascade", "hybrid"):
        return None
    name = str(policy.strategy.options.get("judge", "auto"))
    if name not in JUDGES:
        raise PolicyError(policy.name, "strategy.options.judge",
                          f"unknown judge {name!r} (known: {', '.join(JUDGES)})")
    return JUDGES[name]


def escalation_path(policy: Policy, model: str) -> list[str]:
    """The preferred model of each more capable tier, in order: where a weak answer goes."""
    names = policy.tier_names
    return [policy.tiers[t][0] for t in names[names.index(policy.tier_of(model)) + 1:]]
