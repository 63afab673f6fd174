"""Classification labels: validating a label set, building prompts, reading the label back.

Prompts follow the simulator's convention (tierline/sim/README.md), which is also what the instant
provider reads: an instruction line, ``Labels: a, b, c``, a ``Text:`` line, the text on one
line, and a final ``Label:`` cue. Reading an answer back is tolerant of what models add —
case, quotes, punctuation, a ``Label:`` prefix, ``_``/``-``/space spelled differently — and
strict about what they mean: exactly one label, or none.

Confidence of an answer (the escalation hook compares it with the policy's bar):

    1.0   the answer is a label, once case, quotes and a prefix are stripped
    0.9   the same, but only when ``_``, ``-`` and spaces count as one separator
    0.5-0.8  one label inside extra text (higher when the label is most of the answer)
    0.2   several different labels named: ambiguous, no label is taken
    0.0   no label at all

A hook that sees only a request's prompt and answer uses ``prompt_confidence``: it reads
the label set back from the prompt's ``Labels:`` line (None for other prompts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from tierline.router.errors import InvalidInput

INSTRUCTION = "Classify the text into exactly one of the labels. Answer with the label only."
_SEPARATORS = re.compile(r"[\s_\-]+")
_DECORATION = " \t\r\n\"'`*.,;:!?()[]{}<>"
_PREFIX = re.compile(
    r"^(?:the\s+)?(?:label|answer|category|class|intent)\b(?:\s+is\b)?\s*[:=\-]?\s*",
    re.IGNORECASE)
_CUE_LINE = re.compile(r"^\s*(labels?|text)\s*:", re.IGNORECASE)
_OR_WORD = re.compile(r"\bor\b")  # the simulator splits a labels line on it (lower case only)


def _key(text: str) -> str:
    """How labels are compared: case-folded, ``_``/``-``/whitespace runs as one space."""
    return _SEPARATORS.sub(" ", text.casefold()).strip()


@dataclass(frozen=True)
class LabelMatch:
    """What an answer says: the one label it names (or None) and how cleanly it says it."""

    label: str | None
    confidence: float
    how: str  # exact | separators | inside | ambiguous | none


class LabelSet:
    """A validated, ordered set of labels with the matchers built once (reused per answer)."""

    def __init__(self, labels: Iterable[str], source: str = "labels") -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        self.source = source
        _validate(self.labels, source)
        self._by_exact = {label.casefold(): label for label in self.labels}
        self._by_key = {_key(label): label for label in self.labels}
        # Longest first: at one position the regex takes the first alternative that matches,
        # so a label that is a prefix of another never shadows it.
        # Inside text, '_' and '-' join words: "card_arrivals" names no label, not even "card".
        keys = sorted(self._by_key, key=len, reverse=True)
        alternatives = (r"[\s_\-]+".join(map(re.escape, k.split(" "))) for k in keys)
        self._search = re.compile(r"(?<![\w\-])(" + "|".join(alternatives) + r")(?![\w\-])")

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.labels)

    def match(self, answer: str | None) -> LabelMatch:
        """The single label ``answer`` names, with its confidence (see the module docstring)."""
        if not answer or not answer.strip():
            return LabelMatch(None, 0.0, "none")
        for cleaned in _cleaned(answer):
            if cleaned.casefold() in self._by_exact:
                return LabelMatch(self._by_exact[cleaned.casefold()], 1.0, "exact")
        for cleaned in _cleaned(answer):
            if _key(cleaned) in self._by_key:
                return LabelMatch(self._by_key[_key(cleaned)], 0.9, "separators")
        key = _key(cleaned)
        found = {self._by_key[_key(m.group(1))] for m in self._search.finditer(answer.casefold())}
        if len(found) == 1:
            label = found.pop()
            share = min(1.0, len(_key(label)) / max(1, len(key)))
            return LabelMatch(label, round(0.5 + 0.3 * share, 3), "inside")
        if found:
            return LabelMatch(None, 0.2, "ambiguous")
        return LabelMatch(None, 0.0, "none")

    def prompt(self, text: str, instructions: str | None = None) -> str:
        """The classification prompt for ``text`` (whitespace collapsed onto one line)."""
        return build_prompt(text, self, instructions)


def _cleaned(answer: str) -> list[str]:
    """The answer less surrounding quotes and punctuation, then less each ``Label:``-style
    prefix in turn (a label such as ``class`` must still match before a prefix is cut)."""
    text = answer.strip(_DECORATION)
    out = [text]
    while (cut := _PREFIX.sub("", text, count=1).strip(_DECORATION)) != text:
        text = cut
        out.append(text)
    return out


def _validate(labels: Sequence[str], source: str) -> None:
    """Labels the prompt convention can carry and the matcher can tell apart."""
    if len(labels) < 2:
        raise InvalidInput(f"{source}: need at least 2 labels, got {len(labels)}")
    seen: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise InvalidInput(f"{source}: empty label")
        if label != label.strip() or label != label.strip(".;'\""):
            raise InvalidInput(f"{source}: label {label!r} starts or ends with space or .;'\"")
        if "," in label or "\n" in label or "\r" in label:
            raise InvalidInput(f"{source}: label {label!r} contains a comma or a line break")
        if _OR_WORD.search(label):
            raise InvalidInput(f"{source}: label {label!r} contains the word 'or', which "
                             "separates labels on the Labels: line")
        key = _key(label)
        if not key:
            raise InvalidInput(f"{source}: label {label!r} has no letters or digits")
        if key in seen:
            if seen[key] == label:
                raise InvalidInput(f"{source}: duplicate label {label!r}")
            raise InvalidInput(f"{source}: labels {seen[key]!r} and {label!r} are the same label "
                             "when answers are read (case, '_', '-' and spaces are ignored)")
        seen[key] = label


def build_prompt(text: str, labels: LabelSet | Sequence[str],
                 instructions: str | None = None) -> str:
    """A classification prompt in the simulator's convention (see the module docstring).

    The text is put on one line (whitespace runs collapsed) so that nothing in it can be
    read as a ``Label:`` cue; ``instructions`` come first and may not hold a cue line.
    """
    label_set = labels if isinstance(labels, LabelSet) else label_set_of(tuple(labels))
    one_line = " ".join(text.split())
    if not one_line:
        raise InvalidInput("text: is empty")
    lines = []
    if instructions and instructions.strip():
        check_instructions(instructions)
        lines.append(instructions.strip())
    lines += [INSTRUCTION, "Labels: " + ", ".join(label_set.labels), "Text:", one_line, "Label:"]
    return "\n".join(lines)


def check_instructions(instructions: str, source: str = "instructions") -> None:
    """Instructions may not contain a line that reads as ``Labels:``, ``Label:`` or ``Text:``."""
    for line in instructions.splitlines():
        if _CUE_LINE.match(line):
            raise InvalidInput(f"{source}: a line starts with {line.split(':')[0].strip()!r}:, "
                             "which the prompt convention reserves")


@lru_cache(maxsize=32)
def label_set_of(labels: tuple[str, ...]) -> LabelSet:
    """A cached :class:`LabelSet` for a tuple of labels."""
    return LabelSet(labels)


def _as_set(labels: LabelSet | Sequence[str]) -> LabelSet:
    return labels if isinstance(labels, LabelSet) else label_set_of(tuple(labels))


def extract_label(answer: str | None, labels: LabelSet | Sequence[str]) -> str | None:
    """The one label ``answer`` names, or None when it names none or several."""
    return _as_set(labels).match(answer).label


def label_confidence(answer: str | None, labels: LabelSet | Sequence[str]) -> float:
    """1.0 for a clean single-label answer, lower for extra text or ambiguity, 0 for none."""
    return _as_set(labels).match(answer).confidence


_LABELS_LINE = re.compile(r"^\s*labels\s*:\s*(?P<labels>.+?)\s*$", re.IGNORECASE)


def labels_of_prompt(prompt: str) -> tuple[str, ...] | None:
    """The labels of a classification prompt's ``Labels:`` line (the simulator's rule), or None.

    Lets a confidence hook that sees only the prompt and the answer find the label set.
    """
    for line in prompt.splitlines():
        found = _LABELS_LINE.match(line)
        if found:
            labels = [x.strip(" .;'\"") for x in re.split(r",|\bor\b", found["labels"])]
            return tuple(x for x in labels if x) or None
    return None


def prompt_confidence(prompt: str, answer: str | None) -> float | None:
    """``label_confidence`` of ``answer`` against the labels its prompt lists; None when the
    prompt is not a classification prompt or its labels are not a valid set."""
    labels = labels_of_prompt(prompt)
    if labels is None:
        return None
    try:
        return label_set_of(labels).match(answer).confidence
    except InvalidInput:
        return None
