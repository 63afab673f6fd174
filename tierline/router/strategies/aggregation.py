"""Several models' answers to one request brought to one: a majority vote over the answers
extracted from their responses, or an evaluator model's pick among numbered candidates.

Pure: the tier worker calls the models (tierline/workers/engine/panel.py) and hands the texts here.

- :func:`majority`: the one vote rule, live and offline (tierline.router.strategies.basic.vote, the
  trained parallel strategy, uses it too). The answer most responses give wins; a tie goes
  to the answer whose strongest supporter is the strongest; the response returned is that
  supporter's own. Strength is the learned P(correct) where a trained router gives one,
  then the price (pricier = abler); equal strengths go to the one listed first. With no
  answer to read anywhere (free text), the strongest model's response stands.
- :func:`panel_vote`: that rule over a panel's texts, reading each answer from its response.
- :func:`evaluator_prompt` / :func:`read_pick`: the prompt that asks an evaluator model for
  the number of the best candidate, and the reading of its reply (None when it names no
  single candidate, so the caller falls back to the vote).

Answers are read the way the free judges read them (tierline.router.live.escalation): the label of a
classification prompt (a ``Labels:`` line), else a choice letter or a number, and only when
the prompt asks for a definite answer at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tierline.router.errors import InvalidInput
from tierline.router.learned.answers import extract_auto
from tierline.router.learned.labels import label_set_of, labels_of_prompt
from tierline.router.live.escalation import asks_definite_answer

# How a vote was decided, as recorded in a result's detail.
MAJORITY = "majority"  # one answer had more supporters than any other
TIE = "tie"  # several answers had the most supporters: the priciest supporter's won
NO_ANSWER = "no answer"  # nothing to count: the most capable model's response stands

EVALUATOR_INSTRUCTION = ("Several responses to the same request follow. Which response answers "
                         "it best? Answer with the number of that response only.")


@dataclass(frozen=True)
class Candidate:
    """One model's response; ``capability`` ranks ties (the policy's price: pricier = abler)."""

    model: str
    text: str
    capability: float


@dataclass(frozen=True)
class Majority:
    """What :func:`majority` found: the chosen index, its answer, how, and the groups."""

    chosen: int
    answer: str | None
    decided_by: str  # MAJORITY | TIE | NO_ANSWER
    groups: dict[str, list[int]]  # answer -> indices giving it, strongest first


def majority(answers: Sequence[str | None], strength: Sequence[tuple[float, ...]]) -> Majority:
    """The one vote rule (see the module doc) over extracted ``answers`` (None: no vote),
    each response's ``strength`` compared as a tuple, strongest first."""
    if not answers or len(answers) != len(strength):
        raise ValueError("majority needs one strength per answer, and at least one answer")
    # Strongest first; sorted() is stable, so equal strengths keep their listed order.
    order = sorted(range(len(answers)), key=lambda i: tuple(-x for x in strength[i]))
    groups: dict[str, list[int]] = {}
    for i in order:
        answer = answers[i]
        if answer is not None:
            groups.setdefault(answer, []).append(i)
    if not groups:
        return Majority(order[0], None, NO_ANSWER, groups)
    most = max(len(group) for group in groups.values())
    leaders = [a for a, group in groups.items() if len(group) == most]
    # A group's first index is its strongest supporter: the leader whose comes first wins.
    answer = min(leaders, key=lambda a: order.index(groups[a][0]))
    return Majority(groups[answer][0], answer, MAJORITY if len(leaders) == 1 else TIE, groups)


@dataclass(frozen=True)
class Verdict:
    """Which candidate was chosen (an index), the answer it gives, and how."""

    chosen: int
    answer: str | None
    decided_by: str  # MAJORITY | TIE | NO_ANSWER
    votes: dict[str, list[str]] = field(default_factory=dict)  # answer -> models giving it


def answer_of(prompt: str, response: str) -> str | None:
    """The answer a response gives: its label (classification prompts), else a choice
    letter or a number when the prompt asks for a definite answer; None otherwise."""
    labels = labels_of_prompt(prompt)
    if labels is not None:
        try:
            return label_set_of(labels).match(response).label
        except InvalidInput:  # not a label set the matcher can tell apart: read it as text
            pass
    if not asks_definite_answer(prompt):
        return None
    return extract_auto(response)


def panel_vote(prompt: str, candidates: Sequence[Candidate]) -> Verdict:
    """:func:`majority` over the answers read from the candidates' texts, ranked by price."""
    if not candidates:
        raise ValueError("vote needs at least one candidate")
    found = majority([answer_of(prompt, c.text) for c in candidates],
                     [(c.capability,) for c in candidates])
    votes = {a: [candidates[i].model for i in group] for a, group in found.groups.items()}
    return Verdict(found.chosen, found.answer, found.decided_by, votes)


def _quoted(text: str) -> str:
    """Every line behind '> ': no embedded line can pose as the prompt's own cue lines."""
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])


def evaluator_prompt(prompt: str, responses: Sequence[str]) -> str:
    """Ask for the number (1-based) of the best response, in the classification convention
    (a ``Labels:`` line of the numbers), which the simulator and the instant provider read."""
    if len(responses) < 2:
        raise ValueError("an evaluator needs at least two responses to choose from")
    numbers = ", ".join(str(i) for i in range(1, len(responses) + 1))
    parts = [EVALUATOR_INSTRUCTION, f"Labels: {numbers}", "Text:", "Request:", _quoted(prompt)]
    for i, response in enumerate(responses, 1):
        parts += [f"Response {i}:", _quoted(response)]
    parts.append("Label:")
    return "\n".join(parts)


def read_pick(reply: str, n: int) -> int | None:
    """The 0-based index of the response an evaluator's reply names, or None.

    Takes exactly one number among 1..n, however decorated ("2", "**2**", "Response 2",
    "2 is best"), read as a label (tierline.router.learned.labels); a reply naming several,
    none, or only
    numbers out of range names no pick.
    """
    if n < 2:
        raise ValueError("read_pick needs at least two responses")
    found = label_set_of(tuple(str(i) for i in range(1, n + 1))).match(reply).label
    return None if found is None else int(found) - 1
