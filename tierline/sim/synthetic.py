"""Deterministic synthetic answers: gold-aware classification labels and filler text.

Every choice is a hash of (seed, model, prompt text), never global random state, so a
run can be repeated. An answer is a tuple of token pieces; its usage is their count.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from tierline.sim.fleet import ModelProfile, SimConfigError

_VOCAB_TEXT = (
    "the answer depends on a few key points first consider what is asked then weigh "
    "each option against the facts in short this is the most likely result given the "
    "context and it follows from basic reasoning about cost time risk and value so we "
    "can say with some care that the case holds in most settings"
)
_VOCAB = tuple(dict.fromkeys(_VOCAB_TEXT.split()))  # distinct words, in order
_LABELS_LINE = re.compile(r"^\s*labels\s*:\s*(?P<labels>.+?)\s*$", re.IGNORECASE)
_TOPIC_WORD = re.compile(r"\b[A-Za-z]{5,}\b")
_OPTION = re.compile(r"^\(([A-Z])\)\s", re.MULTILINE)


def unit(*parts: object) -> float:
    """A uniform value in [0, 1) derived from ``parts`` by hashing."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def chars_to_tokens(text: str) -> int:
    """Token estimate of a text: characters / 4, rounded up, at least 1."""
    return max(1, (len(text) + 3) // 4)


def split_pieces(text: str, n: int) -> tuple[str, ...]:
    """Split ``text`` into ``n`` contiguous pieces of near-equal length (n >= 1)."""
    n = max(1, n)
    return tuple(text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n))


def _labels(line: str) -> list[str] | None:
    """Labels of a ``Labels: a, b or c`` line, or None when the line is not one."""
    found = _LABELS_LINE.match(line)
    if not found:
        return None
    labels = [x.strip(" .;'\"") for x in re.split(r",|\bor\b", found["labels"])]
    return [x for x in labels if x] or None


def parse_classification(prompt: str) -> tuple[list[str], str] | None:
    """Labels and text of a classification prompt (see README), or None if it is not one."""
    labels: list[str] | None = None
    rest: list[str] = []  # lines other than the labels line and a bare "Label:" cue
    text_lines: list[str] | None = None
    for line in prompt.splitlines():
        stripped = line.strip()
        if text_lines is not None and stripped.lower() == "label:":
            break
        if text_lines is not None:
            text_lines.append(line)
        elif labels is None and (found := _labels(line)) is not None:
            labels = found
        elif stripped.lower().startswith("text:"):
            text_lines = [stripped[len("text:") :]]
        elif stripped.lower() != "label:":
            rest.append(line)
    if not labels:
        return None
    return labels, "\n".join(rest if text_lines is None else text_lines).strip()


def normalise(text: str) -> str:
    """Gold-map lookup key: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


def _gold_rows(path: Path, fh: TextIO) -> Iterator[tuple[str, str]]:
    """(text, label) rows of a gold file: JSONL {text, label} or CSV text,label|category."""
    if path.suffix == ".jsonl":
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield str(row["text"]), str(row["label"])
            except (ValueError, KeyError, TypeError) as exc:
                reason = f"need a JSON object with text and label ({exc})"
                raise SimConfigError(str(path), f"line {n}", reason) from exc
        return
    reader = csv.DictReader(fh)
    columns = reader.fieldnames or []
    label_col = "label" if "label" in columns else "category"
    if "text" not in columns or label_col not in columns:
        raise SimConfigError(str(path), "<header>", f"need columns text,label; got {columns}")
    for row in reader:
        yield row["text"], row[label_col]


def load_gold(path: str | Path) -> dict[str, str]:
    """Read a gold map, keyed by normalised text (see ``normalise``)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return {normalise(text): label for text, label in _gold_rows(path, fh)}
    except OSError as exc:
        raise SimConfigError(str(path), "<file>", f"cannot read: {exc.strerror}") from exc


def knows(prompt: str, model: str, profile: ModelProfile, seed: int) -> bool:
    """Whether ``model`` gets ``prompt`` right: true with probability = accuracy.

    The same draw picks the gold label in ``classify``; for other prompts it only sets how
    sure the model sounds (``logprobs``).
    """
    parsed = parse_classification(prompt)
    return unit(seed, model, "correct", prompt if parsed is None else parsed[1]) < profile.accuracy


def logprobs(prompt: str, model: str, profile: ModelProfile, seed: int, n: int
             ) -> tuple[float, ...]:
    """Per-token log-probabilities of an answer of ``n`` tokens: near 0 (-0.4 to 0) when
    the model knows the answer, low (-4.5 to -1.5) when it does not."""
    rng = random.Random(f"{seed}\x1f{model}\x1flogprobs\x1f{prompt}")  # seeded by a hash
    if knows(prompt, model, profile, seed):
        return tuple(round(-0.4 * rng.random(), 4) for _ in range(n))
    return tuple(round(-1.5 - 3.0 * rng.random(), 4) for _ in range(n))


def classify(
    labels: list[str],
    text: str,
    model: str,
    profile: ModelProfile,
    seed: int,
    gold: dict[str, str] | None,
) -> str:
    """The label ``model`` answers: gold with probability = accuracy, else another one."""
    truth = gold.get(normalise(text)) if gold else None
    if truth is None:
        return labels[int(unit(seed, model, "label", text) * len(labels))]
    if unit(seed, model, "correct", text) < profile.accuracy:  # the draw of ``knows``
        return truth
    others = [label for label in labels if label != truth] or labels
    return others[int(unit(seed, model, "wrong", text) * len(others))]


def filler(prompt: str, model: str, profile: ModelProfile, seed: int) -> tuple[str, ...]:
    """A plausible text answer; its length grows with the prompt, capped by answer_tokens."""
    base = min(profile.answer_tokens, 8 + chars_to_tokens(prompt) // 3)
    n = max(4, int(base * (0.75 + 0.5 * unit(seed, model, "len", prompt))))
    n = min(n, profile.answer_tokens)
    rng = random.Random(f"{seed}\x1f{model}\x1fwords\x1f{prompt}")  # seeded by a hash
    words: list[str] = []
    while len(words) < n:
        word = rng.choice(_VOCAB)
        if not words or word != words[-1]:
            words.append(word)
    topic = [w.lower() for w in _TOPIC_WORD.findall(prompt)[:3]]
    if topic and n >= len(topic) + 8:  # open on the prompt's own words: "About x y z: ..."
        words[: len(topic) + 1] = ["about", *topic[:-1], topic[-1] + ":"]
    options = _OPTION.findall(prompt)
    if options and n >= 6:  # multiple choice: end the way graders expect
        letter = options[int(unit(seed, model, "option", prompt) * len(options))]
        words[-5:] = ["so", "the", "answer", "is", f"({letter})."]
    pieces: list[str] = []
    for i, word in enumerate(words):
        word = word.capitalize() if i == 0 or pieces[-1].endswith((".", ":")) else word
        end = "." if (i + 1) % 12 == 0 and i + 1 < n - 6 and not word.endswith(".") else ""
        pieces.append(("" if i == 0 else " ") + word + end)
    if not pieces[-1].endswith("."):
        pieces[-1] += "."
    return tuple(pieces)


def answer(
    prompt: str, model: str, profile: ModelProfile, seed: int, gold: dict[str, str] | None
) -> tuple[str, ...]:
    """The token pieces ``model`` answers to ``prompt`` in synthetic mode."""
    parsed = parse_classification(prompt)
    if parsed is None:
        return filler(prompt, model, profile, seed)
    label = classify(parsed[0], parsed[1], model, profile, seed, gold)
    return split_pieces(label, chars_to_tokens(label))
