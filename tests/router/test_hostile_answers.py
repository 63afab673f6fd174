"""Nothing a model writes can crash routing: every extractor, feature and judge in tierline/router/
over hostile responses (huge or non-finite numbers, empty and 1 MB answers, control
characters, lone surrogates)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierline.router.learned.answers import EXTRACTORS, label_extractor, states_answer
from tierline.router.learned.arithmetic import (
    check_claims,
    differs_from_last,
    echoes_prompt,
    is_fractional,
    unused_share,
)
from tierline.router.learned.confidence import response_dense
from tierline.router.learned.features import DEFAULT_HASHING, hash_texts
from tierline.router.learned.judge import Judge, LastResponseJudge
from tierline.router.learned.labels import (
    extract_label,
    label_confidence,
    labels_of_prompt,
    prompt_confidence,
)
from tierline.router.live.escalation import JUDGES
from tierline.router.strategies.aggregation import Candidate as PanelCandidate
from tierline.router.strategies.aggregation import answer_of, panel_vote, read_pick
from tierline.router.strategies.steps import Attempt

FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HUGE_NUMBERS = st.sampled_from([
    "9" * 400, "-" + "9" * 400 + ".5", "1" + "0" * 5000, "1e400", "inf", "-inf", "nan", "NaN",
    "1.7976931348623157e308", "0." + "0" * 400 + "1", "12,345,678,901,234,567,890" * 20,
    "#### " + "9" * 400, "\\boxed{" + "9" * 400 + "}", "the answer is " + "9" * 400,
])
CONTROL = st.text(alphabet=st.characters(max_codepoint=0x20), max_size=50)
SURROGATES = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                     min_size=1, max_size=10)
PIECES = st.one_of(HUGE_NUMBERS, CONTROL, SURROGATES, st.text(max_size=200),
                   st.just("The answer is (C)."), st.just("12 * 4 = 48\n#### 48"))
HOSTILE = st.one_of(
    st.lists(PIECES, max_size=6).map(" ".join),
    st.just(""),
    st.just("9" * (1 << 20)),  # 1 MB of digits
    st.just(("12 * 4 = 46 " * 90_000)[: 1 << 20]),  # 1 MB of failing arithmetic
    st.just("answer is (A) \x00\x1b\ud800 " * 40_000),  # 1 MB with NULs and surrogates
)
PROMPT = "Labels: cat, dog, bird\nHow many? The farmer has 12 cows and 4 pens. Answer:"
MODELS = ("cheap", "mid", "top")


@FAST
@given(HOSTILE)
def test_every_extractor_returns_a_string_or_none_for_any_response(text: str) -> None:
    for extract in [*EXTRACTORS.values(), label_extractor(["cat", "dog", "bird"])]:
        answer = extract(text)
        assert answer is None or isinstance(answer, str)
    assert isinstance(states_answer(text), bool)


@FAST
@given(HOSTILE, HOSTILE)
def test_the_numeric_self_checks_never_raise(response: str, answer_text: str) -> None:
    answer = EXTRACTORS["auto"](answer_text)
    claims = check_claims(response)
    assert claims.held >= 0 and claims.failed >= 0
    assert isinstance(differs_from_last(answer, claims), bool)
    assert isinstance(echoes_prompt(response[:2000], answer), bool)
    assert isinstance(is_fractional(answer), bool)
    assert 0.0 <= unused_share(PROMPT + response[:2000], response) <= 1.0


@FAST
@given(st.lists(HOSTILE, min_size=1, max_size=3))
def test_features_are_finite_for_any_response(responses: list[str]) -> None:
    answers = [EXTRACTORS["auto"](r) for r in responses]
    dense = response_dense([PROMPT] * len(responses), responses, answers,
                           np.zeros(len(responses)))
    assert np.isfinite(dense).all()
    rows = hash_texts(responses, DEFAULT_HASHING)
    assert rows.n_rows == len(responses)


@FAST
@given(HOSTILE)
def test_every_free_judge_scores_any_response_or_abstains(text: str) -> None:
    for judge in JUDGES.values():
        p = judge(PROMPT, text)
        assert p is None or 0.0 <= p <= 1.0
    assert extract_label(text, ["cat", "dog", "bird"]) in (None, "cat", "dog", "bird")
    assert 0.0 <= label_confidence(text, ["cat", "dog", "bird"]) <= 1.0
    p = prompt_confidence(PROMPT, text)
    assert p is None or 0.0 <= p <= 1.0
    labels_of_prompt(text)


@FAST
@given(st.lists(HOSTILE, min_size=1, max_size=3), st.integers(2, 5))
def test_panels_vote_and_read_picks_from_any_responses(texts: list[str], n: int) -> None:
    verdict = panel_vote(PROMPT, [PanelCandidate(f"m{i}", t, float(i))
                                  for i, t in enumerate(texts)])
    assert 0 <= verdict.chosen < len(texts)
    answer_of(PROMPT, texts[0])
    pick = read_pick(texts[0], n)
    assert pick is None or 0 <= pick < n


@FAST
@given(st.lists(st.tuples(HOSTILE, st.floats(allow_nan=True, allow_infinity=True)),
                min_size=1, max_size=3))
def test_trained_judges_rank_any_answers(answers: list[tuple[str, float]]) -> None:
    attempts = [Attempt(MODELS[i], text, EXTRACTORS["auto"](text),
                        evidence if math.isfinite(evidence) else 0.0)
                for i, (text, evidence) in enumerate(answers)]
    judge = Judge(MODELS, np.full(8 + 2 * len(MODELS), 0.1), -0.2)
    for j in (judge, LastResponseJudge()):
        ranked = j.candidates(attempts, {m: 0.0 for m in MODELS})
        assert ranked and all(0.0 <= c.confidence <= 1.0 for c in ranked)
