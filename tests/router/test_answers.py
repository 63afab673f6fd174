"""Answer extraction: letters, numbers and labels, or None when the response gives none."""

from __future__ import annotations

import pytest

from tierline.router.learned.answers import (
    EXTRACTORS,
    extract_auto,
    extract_choice,
    extract_number,
    label_extractor,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Let's think. The answer is (I).", "I"),
        ("the answer is (B). Wait, re-check: the answer is (C).", "C"),
        ("The ANSWER IS **D**", "D"),
        ("Answer: (A)", "A"),
        ("so option (F) fits best (F)", "F"),
        ("the answer is a bit unclear", None),
        ("Answer: N/A", None),
        ("I cannot determine this.", None),
        ("", None),
    ],
)
def test_extract_choice_reads_the_last_stated_letter(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16 - 7 = 9 eggs, 9 * 2 = 18\n#### 18", "18"),
        ("she makes $1,234.50 in total", "1234.5"),
        ("so the total is \\boxed{42}.", "42"),
        ("costs 3 then 5 then 7.", "7"),
        ("the result is -4", "-4"),
        ("#### 5.0", "5"),
        ("no digits here", None),
    ],
)
def test_extract_number_prefers_hashes_then_the_last_number(text: str, expected: str | None) -> (
    None
):
    assert extract_number(text) == expected


def test_extract_auto_takes_a_stated_letter_before_numbers() -> None:
    assert extract_auto("3 + 4 = 7, so the answer is (C)") == "C"
    assert extract_auto("3 + 4 = 7") == "7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("This looks like card_arrival to me.", "card_arrival"),
        ("Not card_arrival; it is CARD_LINKING", "card_linking"),
        ("no label", None),
        ("card_arrivals", None),
    ],
)
def test_label_extractor_returns_the_last_whole_label(text: str, expected: str | None) -> None:
    extract = label_extractor(["card_arrival", "card_linking"])
    assert extract(text) == expected


def test_label_extractor_needs_labels() -> None:
    with pytest.raises(ValueError):
        label_extractor([])


def test_registry_names_every_extractor() -> None:
    assert set(EXTRACTORS) == {"choice", "number", "auto"}


def test_a_number_too_large_for_a_float_is_its_own_digits() -> None:
    from tierline.router.learned.answers import extract_number

    assert extract_number("so #### " + "9" * 400) == "9" * 400
    assert extract_number("x = -00" + "9" * 400 + ".50") == "-" + "9" * 400 + ".5"
    assert extract_number("1,000.0") == "1000"
