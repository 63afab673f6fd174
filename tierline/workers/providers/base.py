"""What every provider speaks: a ``ModelCall`` in, a ``Completion`` out, errors from the tree."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tierline.router.errors import DeadlineExceeded, MalformedResponse
from tierline.router.live.early_stop import EarlyStop

Message = dict[str, str]  # chat format: {"role": ..., "content": ...}


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One model call: ``model`` is the name sent to the API; ``key`` is the caller's match key.

    ``stream`` asks ``complete`` to read the answer as a stream (for servers that only report
    usage or keep connections alive that way); ``Provider.stream`` always streams.
    ``sink``: the call is streamed and each piece of text handed to it as it arrives.
    ``early_stop``: cut the answer short while its per-token confidence stays low, where the
    API streams logprobs (OpenAI-compatible); the answer then ends with finish reason
    ``tierline.router.live.early_stop.EARLY_STOP``. Providers without logprobs ignore it.
    """

    model: str
    messages: Sequence[Message]
    max_output_tokens: int
    temperature: float = 0.0
    stream: bool = False
    key: Hashable = None
    early_stop: EarlyStop | None = None
    sink: TextSink | None = field(default=None, compare=False)  # streamed as it is generated


class TextSink(Protocol):
    """Takes an answer's text as it is generated: ``begin`` when an attempt starts (the
    text of an earlier one is void), then each piece."""

    def begin(self) -> None: ...

    def text(self, piece: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer with its usage; ``usage_estimated`` when the server reported none."""

    text: str
    tokens_in: int
    tokens_out: int
    usage_estimated: bool
    latency_s: float
    finish_reason: str | None
    model: str


@runtime_checkable
class Provider(Protocol):
    """A model API; raises only ``tierline.router.errors.ProviderError`` subclasses (and
    ``DeadlineExceeded`` before calling when ``timeout_s`` is not positive)."""

    def complete(self, call: ModelCall, *, timeout_s: float) -> Completion:
        """Ask for one whole answer within ``timeout_s`` seconds."""
        ...

    def stream(self, call: ModelCall, *, timeout_s: float) -> TextStream:
        """Ask for an answer as text deltas; the ``Completion`` is on the stream afterwards."""
        ...


@dataclass(slots=True)
class TextStream:
    """Text deltas of one streamed answer; ``completion`` is set once the stream is exhausted.

    Use it in a ``with`` block, or ``close()`` it, when you may stop before the end.
    """

    _deltas: Iterator[str]
    _finish: Callable[[], Completion]
    _close: Callable[[], None] | None = None
    _completion: Completion | None = field(default=None, init=False)
    _closed: bool = field(default=False, init=False)

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._deltas)
        except StopIteration:
            if self._completion is None and not self._closed:
                self._completion = self._finish()
            raise

    @property
    def completion(self) -> Completion:
        """The assembled answer with usage; raises ``RuntimeError`` before the stream ends."""
        if self._completion is None:
            raise RuntimeError("the stream was not read to the end")
        return self._completion

    def read(self) -> Completion:
        """Drain the remaining deltas and return the assembled answer."""
        for _ in self:
            pass
        return self.completion

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading early and release the connection (a dropped stream holds it)."""
        if self._completion is None:
            self._closed = True  # a cut-short stream must never pass for a whole answer
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()
        if self._close is not None:
            self._close()


def estimate_tokens(text: str) -> int:
    """The fallback token count when a server reports none: characters / 4, at least 1."""
    return max(1, math.ceil(len(text) / 4))


def messages_text(messages: Sequence[Message]) -> str:
    """All message contents joined, for estimating prompt tokens."""
    return "\n".join(str(message.get("content", "")) for message in messages)


def require_budget(timeout_s: float, model: str) -> None:
    """Fail fast, without calling, when nothing is left of the latency budget."""
    if not timeout_s > 0:  # also catches NaN
        raise DeadlineExceeded(f"{model}: no latency budget left ({timeout_s:.3f} s)")


def _count(value: Any) -> int | None:
    """A reported token count, or None when absent or not a non-negative integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def usage_or_estimate(
    tokens_in: Any, tokens_out: Any, prompt: str, text: str
) -> tuple[int, int, bool]:
    """Reported usage where the server gave it, else the estimate; flagged when estimated."""
    reported_in, reported_out = _count(tokens_in), _count(tokens_out)
    estimated = reported_in is None or reported_out is None
    return (
        estimate_tokens(prompt) if reported_in is None else reported_in,
        estimate_tokens(text) if reported_out is None else reported_out,
        estimated,
    )


def checked_text(text: str, finish_reason: str | None, model: str) -> str:
    """``text``, unless it is empty and the server gave no finish reason.

    An empty answer is passed on only when the server explicitly ended it (``stop``,
    ``length``, a content filter...): the reason travels with it for the judge. An empty
    answer with no reason is a broken response, never a silent empty result.
    """
    if not text and not finish_reason:
        raise MalformedResponse(f"{model}: empty answer with no finish reason", model=model)
    return text
