"""Synthetic answers in-process: classification convention, gold accuracy, determinism."""

from __future__ import annotations

from pathlib import Path

import httpx

from tierline.sim.fleet import Fleet, ModelProfile
from tierline.sim.limits import SlidingWindow
from tierline.sim.server import start
from tierline.sim.synthetic import answer, load_gold, parse_classification

LABELS = ["billing", "shipping", "returns", "card_lost"]
TEXTS = [f"my order number {i} has not arrived yet" for i in range(60)]


def prompt(text: str) -> str:
    return (
        "Classify the text into exactly one label. Answer with the label only.\n"
        f"Labels: {', '.join(LABELS)}\nText:\n{text}\nLabel:"
    )


def test_classification_prompt_is_parsed() -> None:
    assert parse_classification(prompt("where is\nmy parcel")) == (LABELS, "where is\nmy parcel")
    assert parse_classification("Labels: a, b\nText: inline text") == (["a", "b"], "inline text")
    assert parse_classification("Just a question with no labels") is None
    # without a Text: line, the text is the prompt less the labels line (as workers' instant)
    assert parse_classification("Is this positive?\nlabels: yes, no or maybe.") == (
        ["yes", "no", "maybe"],
        "Is this positive?",
    )


def test_answers_follow_gold_at_the_model_accuracy() -> None:
    gold = {text: "shipping" for text in TEXTS}
    perfect, useless = ModelProfile(accuracy=1.0), ModelProfile(accuracy=0.0)
    half = ModelProfile(accuracy=0.5)
    assert all(answer(prompt(t), "m", perfect, 0, gold) == ("ship", "ping") for t in TEXTS)
    wrong = {"".join(answer(prompt(t), "m", useless, 0, gold)) for t in TEXTS}
    assert wrong <= set(LABELS) - {"shipping"}
    right = sum("".join(answer(prompt(t), "m", half, 0, gold)) == "shipping" for t in TEXTS)
    assert 15 <= right <= 45


def test_without_gold_the_label_is_deterministic_and_from_the_list() -> None:
    first = ["".join(answer(prompt(t), "m", ModelProfile(), 1, None)) for t in TEXTS]
    again = ["".join(answer(prompt(t), "m", ModelProfile(), 1, None)) for t in TEXTS]
    assert first == again and set(first) <= set(LABELS) and len(set(first)) > 1


def test_text_answers_grow_with_the_prompt_and_stay_bounded() -> None:
    profile = ModelProfile(answer_tokens=80)
    short = answer("Hi?", "m", profile, 0, None)
    long = answer("Explain this. " * 100, "m", profile, 0, None)
    assert len(short) < len(long) <= 80


def test_gold_file_drives_answers_over_http(tmp_path: Path) -> None:
    gold = tmp_path / "gold.csv"
    gold.write_text("text,label\n" + "".join(f"{t},returns\n" for t in TEXTS[:5]))

    fleet = Fleet(models={"perfect": ModelProfile(accuracy=1.0, cold_start_s=0, ttft_s=0)})
    with start(fleet, gold=load_gold(gold)) as sim:
        for text in TEXTS[:5]:
            body = httpx.post(
                f"{sim.url}/v1/chat/completions",
                timeout=10,
                json={"model": "perfect", "messages": [{"role": "user", "content": prompt(text)}]},
            ).json()
            assert body["choices"][0]["message"]["content"] == "returns"


def test_sliding_window_waits_until_the_oldest_event_expires() -> None:
    window = SlidingWindow(limit=100)
    window.record(60, now_s=0.0)
    window.record(30, now_s=10.0)
    assert window.wait_s(10, now_s=20.0) == 0.0
    assert window.wait_s(20, now_s=20.0) == 40.0  # the first 60 leave at t=60
    assert window.wait_s(50, now_s=61.0) == 0.0
    assert window.wait_s(101, now_s=61.0) == float("inf")
