"""A response's numbers checked against themselves and the prompt, and the scorer using it."""

from __future__ import annotations

import numpy as np
import pytest

from tierline.router.learned.answers import extract_number, states_answer
from tierline.router.learned.arithmetic import (
    MAX_CLAIMS,
    check_claims,
    differs_from_last,
    echoes_prompt,
    is_fractional,
    unused_share,
)
from tierline.router.learned.confidence import (
    N_DENSE,
    N_PLAIN,
    response_dense,
    train_response_scorer,
)
from tierline.router.learned.features import HashingConfig
from tierline.router.learned.logistic import FitConfig


@pytest.mark.parametrize("text, held, failed", [
    ("12 * 4 = 48", 1, 0),
    ("so 12 * 4 = 46, then", 0, 1),
    ("5 - 3 * 2 = -1 and 2 + 3 * 4 - 6 / 2 = 11", 2, 0),  # * and / before + and -
    ("10 / 3 = 3.33", 1, 0),  # rounded to the shown precision
    ("$1,200 + $300 = $1,500", 1, 0),
    ("3 x 4 = 12 and 6 ÷ 2 = 3 and 2 × 5 = 11", 2, 1),
    ("2x + 3 = 7", 0, 0),  # a variable: not a plain claim
    ("50% * 20 = 10", 0, 0),  # percentages are skipped
    ("5 / 0 = 0", 0, 0),  # cannot be evaluated
    ("a = 5, no sums here", 0, 0),
])
def test_plain_claims_are_checked(text: str, held: int, failed: int) -> None:
    claims = check_claims(text)
    assert (claims.held, claims.failed) == (held, failed)


def test_a_long_response_checks_its_first_claims_only() -> None:
    claims = check_claims(" ".join(["1 + 1 = 2."] * (MAX_CLAIMS + 10)))
    assert claims.held == MAX_CLAIMS


def test_answers_against_the_last_claim_and_the_prompt() -> None:
    response = "She buys 3 * 4 = 12 apples, then 12 + 5 = 17. The answer is 17."
    claims = check_claims(response)
    assert claims.last == 17
    assert not differs_from_last(extract_number(response), claims)
    assert differs_from_last("12", claims)
    assert not differs_from_last("B", claims) and not differs_from_last(None, claims)
    prompt = "Anna has 1,200 apples and 5 pears."
    assert echoes_prompt(prompt, "1200") and echoes_prompt(prompt, "5")
    assert not echoes_prompt(prompt, "1205") and not echoes_prompt(prompt, "(A)")
    assert is_fractional("2.5") and not is_fractional("3") and not is_fractional("nan")


def test_numbers_the_prompt_gives_and_the_response_never_uses() -> None:
    prompt = "Imma has 3 cats. She feeds them twice a day 60 grams. How long do 720 grams last?"
    skipped_the_cats = "60 x 2 = 120 grams a day; 720 / 120 = 6 days"
    assert unused_share(prompt, skipped_the_cats) == pytest.approx(1 / 3)
    assert unused_share(prompt, "3 * 60 * 2 = 360 grams a day; 720 / 360 = 2 days") == 0
    assert unused_share("Pick one: (A) yes (B) no", "the answer is (A)") == 0  # none given
    assert unused_share("It costs $1,200.", "1200 / 2 = 600") == 0  # the same number


def test_stated_answers_are_told_from_guessed_ones() -> None:
    assert states_answer("... so the answer is (C).")
    assert states_answer("#### 42") and states_answer(r"\boxed{42}")
    assert not states_answer("I computed 40 and then 42")


def test_without_the_checks_only_the_plain_columns_remain() -> None:
    prompts, responses = ["2 apples"], ["1 + 1 = 3, the answer is 3"]
    full = response_dense(prompts, responses, ["3"], np.array([0.5]))
    plain = response_dense(prompts, responses, ["3"], np.array([0.5]), checks=False)
    assert full.shape == (1, N_DENSE) and plain.shape == (1, N_PLAIN)
    assert np.array_equal(full[:, :N_PLAIN], plain)


def test_the_scorer_learns_that_answers_whose_sums_fail_are_wrong() -> None:
    """Wrong answers are the ones whose sums do not add up; the words are the same."""
    rng = np.random.default_rng(0)
    responses, scores = [], []
    for _ in range(400):
        a, b = (int(x) for x in rng.integers(2, 50, size=2))
        right = bool(rng.random() < 0.5)
        total = a + b if right else a + b + int(rng.integers(1, 9))
        responses.append(f"First {a} + {b} = {total}. The answer is {total}.")
        scores.append(float(right))
    prompts = ["How many?"] * len(responses)
    answers = [extract_number(r) for r in responses]
    y = np.array(scores)[:, None]
    fit = FitConfig(iterations=60)
    small = HashingConfig(n_bits=10)
    checked = train_response_scorer(["m"], prompts, [responses], [answers], y,
                                     np.zeros((len(y), 1)), small, fit)
    plain = train_response_scorer(["m"], prompts, [responses], [answers], y,
                                  np.zeros((len(y), 1)), small, fit, checks=False)
    assert checked.checks and not plain.checks

    def separation(scorer) -> float:  # type: ignore[no-untyped-def]
        e = scorer.evidence("m", prompts, responses, answers, np.zeros(len(y)))
        return float(e[y[:, 0] == 1].mean() - e[y[:, 0] == 0].mean())

    assert separation(checked) > 1.0
    assert separation(checked) > 2 * separation(plain)
