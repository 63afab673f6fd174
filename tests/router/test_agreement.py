"""The zero-training default as a table: who is asked, and which answer is accepted."""

from __future__ import annotations

import pytest

from tierline.router.strategies.agreement import Agreement, answer_key, normalised, passes_checks
from tierline.router.strategies.steps import Accept, Attempt, Call, RequestView
from tierline.router.strategy_spec import StrategySpec

TIERS = ("nano", "small", "mid", "top")
VIEW = RequestView("Tom has 3 apples and buys 4 more. How many? Answer:")


def _a(model: str, answer: str | None, response: str = "") -> Attempt:
    return Attempt(model, response or f"the answer is {answer}", answer)


def test_the_two_cheapest_are_asked_first_and_their_agreement_is_accepted() -> None:
    s = Agreement(TIERS)
    assert s.step(VIEW, []) == Call(("nano", "small"))
    assert s.step(VIEW, [_a("nano", "7"), _a("small", "7")]) == Accept("small", "7", 1.0, True)


def test_a_disagreement_goes_to_the_top_tier_whose_answer_stands() -> None:
    s = Agreement(TIERS)
    paid = [_a("nano", "7"), _a("small", "8")]
    assert s.step(VIEW, paid) == Call(("top",))
    assert s.step(VIEW, [*paid, _a("top", "9")]) == Accept("top", "9", 0.5)


@pytest.mark.parametrize(("panel", "target", "first"), [
    (1, None, ("nano",)), (3, "top", ("nano", "small", "mid")), (9, None, ("nano", "small", "mid")),
    (0, "mid", ("mid",))])
def test_the_panel_leaves_a_tier_to_escalate_to(panel: int, target: str | None,
                                                first: tuple[str, ...]) -> None:
    assert Agreement(TIERS, panel, target).step(VIEW, []) == Call(first)


def test_no_answer_never_agrees() -> None:
    s = Agreement(TIERS)
    assert s.step(VIEW, [Attempt("nano", "", None), Attempt("small", "", None)]) == Call(("top",))


def test_free_text_agrees_on_its_normalised_text() -> None:
    assert normalised("  Paris.\n") == normalised("paris") == "paris"
    s = Agreement(TIERS)
    paid = [Attempt("nano", "Paris.", None), Attempt("small", " paris", None)]
    assert isinstance(s.step(VIEW, paid), Accept)
    assert answer_key(Attempt("nano", "", None)) is None


def test_a_lone_cheap_answer_must_pass_the_free_checks() -> None:
    assert passes_checks(VIEW.prompt, _a("nano", "7", "3 + 4 = 7. The answer is 7"))
    assert not passes_checks(VIEW.prompt, _a("nano", "8", "3 + 4 = 8. The answer is 8"))
    assert not passes_checks(VIEW.prompt, _a("nano", "4", "The answer is 4"))  # the prompt's
    assert not passes_checks(VIEW.prompt, _a("nano", "7", "7"), strict=True)  # never stated
    s = Agreement(TIERS, 1)
    assert s.step(VIEW, [_a("nano", "8", "3 + 4 = 8. The answer is 8")]) == Call(("top",))


@pytest.mark.parametrize(("options", "reason"), [
    ({"panel": 0}, "options.panel"), ({"panel": True}, "options.panel"),
    ({"answer": "letters"}, "options.answer"), ({"bundle": "b"}, "needs no trained bundle")])
def test_a_broken_agreement_option_says_why(options: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        StrategySpec(kind="agreement", options=options)


def test_agreement_options_belong_to_agreement_only() -> None:
    with pytest.raises(ValueError, match="only kind 'agreement'"):
        StrategySpec(kind="cascade", options={"panel": 2})
