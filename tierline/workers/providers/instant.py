"""An in-process provider that answers at once, without HTTP: deterministic text with
computed usage, so throughput benchmarks measure tierline itself and not a model."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterator

import httpx

from tierline.workers.providers.base import (
    Completion,
    ModelCall,
    TextStream,
    estimate_tokens,
    messages_text,
    require_budget,
)

_LABELS_LINE = re.compile(r"^\s*labels?\s*:\s*(?P<labels>.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_WORD = re.compile(r"[\w'-]+")
_ECHO_WORDS = 12


class InstantProvider:
    """Answers from the prompt alone: a label when it lists ``Labels: a, b, c``, else an echo.

    Its usage is exact by its own definition (characters / 4 of what it read and wrote), so
    ``usage_estimated`` is False: it plays the server, and a server's count is the count.
    """

    needs_base_url = False

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        del base_url, api_key, client  # accepted for the registry's uniform constructor

    def complete(self, call: ModelCall, *, timeout_s: float) -> Completion:
        """Answer ``call`` now."""
        require_budget(timeout_s, call.model)
        started = time.perf_counter()
        prompt = messages_text(call.messages)
        text, finish_reason = answer(prompt, max_chars=call.max_output_tokens * 4)
        return Completion(
            text=text,
            tokens_in=estimate_tokens(prompt),
            tokens_out=estimate_tokens(text),
            usage_estimated=False,
            latency_s=time.perf_counter() - started,
            finish_reason=finish_reason,
            model=call.model,
        )

    def stream(self, call: ModelCall, *, timeout_s: float) -> TextStream:
        """The same answer, a word at a time."""
        completion = self.complete(call, timeout_s=timeout_s)
        return TextStream(_words(completion.text), lambda: completion)


def answer(prompt: str, *, max_chars: int) -> tuple[str, str]:
    """The deterministic answer to ``prompt`` and its finish reason."""
    found = _LABELS_LINE.search(prompt)
    if found:
        labels = [label.strip(" .;'\"") for label in re.split(r",|\bor\b", found["labels"])]
        labels = [label for label in labels if label]
        if labels:
            return _pick(labels, prompt[: found.start()] + prompt[found.end() :]), "stop"
    digest = zlib.crc32(prompt.encode())
    words = _WORD.findall(prompt)[:_ECHO_WORDS]
    text = f"Answer {digest:08x}: " + " ".join(words)
    if len(text) > max_chars:
        return text[: max(1, max_chars)], "length"
    return text, "stop"


def _pick(labels: list[str], text: str) -> str:
    """The first label the text names; otherwise one chosen by a stable hash of the text."""
    lowered = text.lower()
    for label in labels:
        if re.search(rf"\b{re.escape(label.lower())}\b", lowered):
            return label
    return labels[zlib.crc32(text.encode()) % len(labels)]


def _words(text: str) -> Iterator[str]:
    """``text`` in word-sized deltas that join back to it exactly."""
    yield from re.findall(r"\S+\s*|\s+", text)
