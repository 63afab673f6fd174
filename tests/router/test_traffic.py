"""Shadowed traffic becomes training items graded only by agreement with the top tier."""

from __future__ import annotations

import pytest

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Outcome
from tierline.router.learned.traffic import items_from_traffic, reference_answer, traffic_record


def _record(cheap: str, top: str, key: str = "C") -> dict[str, object]:
    # The recorded grade (score 1.0 for both) must never reach the learner.
    outcomes = {"cheap": Outcome(f"the answer is ({cheap})", cheap, 1.0, 10, 5),
                "top": Outcome(f"the answer is ({top})", top, 1.0, 10, 5)}
    return traffic_record("r1", "Which? Answer:", "top", outcomes)


def test_a_record_holds_no_grade() -> None:
    record = _record("A", "B")
    assert all(set(o) == {"response", "prompt_tokens", "completion_tokens"}
               for o in record["outcomes"].values())  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kind", "cheap", "top", "score", "key"), [
    ("choice", "A", "A", 1.0, "A"), ("choice", "A", "B", 0.0, "B"),
    ("recorded", "A", "A", 1.0, None), ("recorded", "A", "B", 0.0, None)])
def test_the_cheap_answer_is_right_when_it_agrees_with_the_top_tier(
        kind: str, cheap: str, top: str, score: float, key: str | None) -> None:
    [item] = items_from_traffic([_record(cheap, top)], kind)
    assert item.outcomes["cheap"].score == score and item.outcomes["top"].score == 1.0
    assert item.key == key


@pytest.mark.parametrize(("answers", "reference"), [
    ({"a": "X", "b": "X", "top": "Y"}, "X"), ({"a": "X", "b": "Z", "top": "Y"}, "Y"),
    ({"a": None, "b": None, "top": "Y"}, "Y"), ({"a": "X", "b": None, "top": None}, "X"),
    ({"a": None, "b": None, "top": None}, None)])
def test_the_reference_is_the_majority_answer_with_ties_to_the_top_tier(
        answers: dict[str, str | None], reference: str | None) -> None:
    assert reference_answer(answers, "top") == reference


@pytest.mark.parametrize(("record", "reason"), [
    ("text", "not a JSON object"), ({"prompt": "p", "outcomes": {}}, "needs 'prompt'"),
    ({"prompt": "p", "top": "t", "outcomes": {}}, "has no outcome"),
    ({"prompt": "p", "top": "t", "outcomes": {"t": {"response": "x", "prompt_tokens": -1,
                                                     "completion_tokens": 1}}}, "whole number")])
def test_a_broken_record_is_refused_with_its_number(record: object, reason: str) -> None:
    with pytest.raises(InvalidInput, match=f"record 1.*{reason}|{reason}"):
        items_from_traffic([record], "choice")
