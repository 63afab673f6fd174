"""Bringing parallel answers to one: the panel_vote, the evaluator's prompt and the reading of its
reply, as tables."""

from __future__ import annotations

import pytest

from tierline.router.learned.labels import build_prompt, labels_of_prompt
from tierline.router.strategies.aggregation import (
    MAJORITY,
    NO_ANSWER,
    TIE,
    Candidate,
    answer_of,
    evaluator_prompt,
    majority,
    panel_vote,
    read_pick,
)
from tierline.router.strategies.basic import vote as strategies_vote
from tierline.router.strategies.steps import Attempt

LABELLED = build_prompt("where is my money", ["refund", "card_lost", "transfer"])
CHOICE = "Which is prime? (A) 4 (B) 6 (C) 7 (D) 9. Give the answer."
FREE = "write me a haiku about autumn"


def _c(model: str, text: str, capability: float) -> Candidate:
    return Candidate(model, text, capability)


@pytest.mark.parametrize(("prompt", "response", "answer"), [
    (LABELLED, "Refund.", "refund"),
    (LABELLED, "card lost", "card_lost"),
    (LABELLED, "refund or transfer", None),  # two labels: no answer
    (CHOICE, "It is 7, so the answer is (C).", "C"),
    (CHOICE, "no idea", None),
    ("What is 6 times 7? Answer with a number.", "#### 42", "42"),
    (FREE, "Leaves fall, 3 geese fly", None),  # free text: numbers in it are no answer
])
def test_answer_of_reads_labels_letters_and_numbers(prompt: str, response: str,
                                                    answer: str | None) -> None:
    assert answer_of(prompt, response) == answer


@pytest.mark.parametrize(("candidates", "chosen", "answer", "decided_by"), [
    # two of three agree: the majority wins, in its priciest supporter's words
    ([_c("nano", "refund", 1), _c("mid", "Refund", 4), _c("top", "transfer", 25)],
     1, "refund", MAJORITY),
    # one each: the priciest model's answer
    ([_c("nano", "refund", 1), _c("top", "transfer", 25)], 1, "transfer", TIE),
    ([_c("top", "transfer", 25), _c("nano", "refund", 1)], 0, "transfer", TIE),
    # a response with no label does not panel_vote
    ([_c("nano", "hmm", 1), _c("mid", "refund", 4), _c("top", "not sure", 25)],
     1, "refund", MAJORITY),
    # nothing to count: the most capable model's response
    ([_c("nano", "hmm", 1), _c("top", "no idea", 25), _c("mid", "dunno", 4)],
     1, None, NO_ANSWER),
])
def test_vote_takes_the_majority_and_breaks_ties_to_the_pricier(
        candidates: list[Candidate], chosen: int, answer: str | None, decided_by: str) -> None:
    verdict = panel_vote(LABELLED, candidates)
    assert (verdict.chosen, verdict.answer, verdict.decided_by) == (chosen, answer, decided_by)


def test_vote_records_who_gave_each_answer() -> None:
    verdict = panel_vote(CHOICE, [_c("a", "the answer is (C)", 1), _c("b", "answer: C", 2),
                            _c("c", "the answer is (A)", 3)])
    assert verdict.votes == {"A": ["c"], "C": ["b", "a"]}
    assert verdict.chosen == 1  # b: the pricier of C's supporters


def test_free_text_is_never_counted() -> None:
    verdict = panel_vote(FREE, [_c("a", "Red leaves, 5 falling", 1),
                                _c("b", "Cold wind, 5 falling", 9)])
    assert (verdict.chosen, verdict.decided_by, verdict.votes) == (1, NO_ANSWER, {})


def test_the_evaluator_prompt_lists_numbered_responses_behind_quotes() -> None:
    prompt = evaluator_prompt(LABELLED, ["refund", "card_lost\nLabel:", "transfer"])
    assert labels_of_prompt(prompt) == ("1", "2", "3")  # the request's own labels are quoted
    assert "Response 2:\n> card_lost\n> Label:\n" in prompt
    assert prompt.endswith("\nLabel:")
    assert prompt.count("\nLabels:") == 1


@pytest.mark.parametrize(("reply", "pick"), [
    ("2", 1),
    ("**3**", 2),
    ("Response 1", 0),
    ("Answer: 2.", 1),
    ("2 is the best one", 1),
    ("1 or 2", None),  # names two
    ("4", None),  # out of range
    ("0", None),
    ("They all look fine.", None),
    ("", None),
    ("12", None),
])
def test_read_pick_takes_exactly_one_number_in_range(reply: str, pick: int | None) -> None:
    assert read_pick(reply, 3) == pick


def test_an_evaluator_needs_a_choice() -> None:
    with pytest.raises(ValueError):
        evaluator_prompt(FREE, ["only one"])
    with pytest.raises(ValueError):
        panel_vote(FREE, [])


@pytest.mark.parametrize(("answers", "strength", "chosen", "decided_by"), [
    (["A", "A", "B"], [(0.0, 1), (0.0, 2), (0.0, 9)], 1, MAJORITY),  # most supporters
    (["A", "B"], [(0.9, 1), (0.4, 9)], 0, TIE),  # a tie: the likelier supporter first
    (["A", "B"], [(0.5, 1), (0.5, 9)], 1, TIE),  # equally likely: the pricier
    (["A", "B"], [(0.5, 3), (0.5, 3)], 0, TIE),  # equal strength: the one listed first
    (["B", "A", "A", "B"], [(0, 2), (0, 1), (0, 2), (0, 1)], 0, TIE),  # B's strongest is first
    ([None, None], [(0.2, 1), (0.6, 1)], 1, NO_ANSWER),  # nothing to count: the strongest
    ([None, None, "C"], [(0.9, 9), (0.9, 9), (0.1, 1)], 2, MAJORITY),  # None does not panel_vote
])
def test_one_vote_rule_majority_then_the_strongest_supporter(
        answers: list[str | None], strength: list[tuple[float, float]], chosen: int,
        decided_by: str) -> None:
    found = majority(answers, strength)
    assert (found.chosen, found.decided_by) == (chosen, decided_by)


@pytest.mark.parametrize("texts", [
    ["refund", "transfer"], ["transfer", "refund"], ["refund", "refund", "transfer"],
    ["hmm", "card lost", "transfer"], ["hmm", "no idea"], ["transfer", "refund", "card lost"],
])
def test_the_panel_vote_and_the_trained_parallel_vote_pick_the_same_response(
        texts: list[str]) -> None:
    models = [f"m{i}" for i in range(len(texts))]
    price = {m: float(1 + 3 * i) for i, m in enumerate(models)}
    panel = panel_vote(LABELLED, [_c(m, t, price[m]) for m, t in zip(models, texts, strict=True)])
    trained = strategies_vote([Attempt(m, t, answer_of(LABELLED, t))
                               for m, t in zip(models, texts, strict=True)],
                              {m: 0.5 for m in models}, price)
    assert (models[panel.chosen], panel.answer) == (trained.answer_from, trained.answer)
