"""The model core: turns an API-neutral chat request into a completion or a SimError.

It decides what each model answers (synthetic or replayed), enforces its RPM/TPM
windows, injects failures and computes latency (cold start, time to first token, per
token time, jitter). It never sleeps: the server does, so time is an argument here.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tierline.sim import synthetic
from tierline.sim.fleet import Fleet, ModelProfile
from tierline.sim.limits import SlidingWindow, retry_after_header
from tierline.sim.replay import ReplayIndex, candidate_texts


class SimError(Exception):
    """A failed call: ``kind`` is not_found, invalid_request, rate_limit, server_error
    or overloaded; each API module renders it in its own error shape."""

    STATUS = {
        "invalid_request": 400,
        "not_found": 404,
        "rate_limit": 429,
        "server_error": 500,
        "overloaded": 503,
    }

    def __init__(
        self, kind: str, message: str, *, param: str | None = None, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = self.STATUS[kind]
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ChatRequest:
    """What both APIs ask: a model, a system text, (role, text) messages, an output cap."""

    model: str
    system: str
    messages: list[tuple[str, str]]
    max_tokens: int | None
    stream: bool
    include_usage: bool = False  # OpenAI stream_options.include_usage
    logprobs: bool = False  # OpenAI logprobs: per-token log-probabilities (synthetic mode)


@dataclass(frozen=True)
class Completion:
    """An answer as token pieces, its usage, and when to send the first and next pieces."""

    model: str
    pieces: tuple[str, ...]
    prompt_tokens: int
    finish: str  # "stop" or "length"
    first_token_delay_s: float
    per_token_s: float
    headers: tuple[tuple[str, str], ...] = ()  # x-ratelimit-* of the model's limits
    logprobs: tuple[float, ...] | None = None  # one per piece, when asked for and synthetic

    @property
    def text(self) -> str:
        """The whole answer text."""
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        """Output tokens: one per piece."""
        return len(self.pieces)


class _ModelState:
    """Mutable per-model state: seeded rng, rate windows, warm-up clock."""

    def __init__(self, name: str, profile: ModelProfile, seed: int) -> None:
        self.profile = profile
        self.rng = random.Random(f"{seed}\x1f{name}")
        self.requests = SlidingWindow(profile.rpm)
        self.tokens = SlidingWindow(profile.tpm)
        self.last_used_s: float | None = None
        self.warm_at_s = 0.0
        self.calls = self.rate_limited = self.failed = 0


class Engine:
    """Serves a fleet in synthetic mode, or replays a dataset when ``replay`` is given."""

    def __init__(
        self, fleet: Fleet, replay: ReplayIndex | None = None, gold: dict[str, str] | None = None
    ) -> None:
        self.fleet = fleet
        self.replay = replay
        self.gold = gold
        self.mode = "replay" if replay is not None else "synthetic"
        self._state = {n: _ModelState(n, p, fleet.seed) for n, p in fleet.models.items()}
        self.served_by_prompt: Counter[tuple[str, str]] = Counter()  # if fleet.count_prompts
        self._burst_until_s = 0.0  # monotonic; every model answers 429 until then
        self._burst_retry_after_s = 0

    @property
    def model_names(self) -> list[str]:
        """Served model names."""
        return list(self._state)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-model counters: calls, rate_limited, failed, and served (calls answered: what
        a provider bills, whether or not the caller was still there to read the answer)."""
        return {
            n: {"calls": s.calls, "rate_limited": s.rate_limited, "failed": s.failed,
                "served": s.calls - s.failed}
            for n, s in self._state.items()
        }

    def served_prompts(self) -> dict[str, dict[str, int]]:
        """Served calls per model and prompt digest (see :func:`prompt_digest`); empty unless
        the config sets ``count_prompts``."""
        out: dict[str, dict[str, int]] = {}
        for (model, digest), n in self.served_by_prompt.items():
            out.setdefault(model, {})[digest] = n
        return out

    def rate_limit_burst(self, seconds: float, retry_after_s: int, now_s: float) -> None:
        """Answer every call with 429 and ``Retry-After: retry_after_s`` for ``seconds`` from
        monotonic ``now_s``, as a provider does when an account's quota runs out."""
        self._burst_until_s = now_s + seconds
        self._burst_retry_after_s = retry_after_s

    def _answer(
        self, req: ChatRequest, profile: ModelProfile
    ) -> tuple[tuple[str, ...], int, tuple[float, ...] | None]:
        """Answer pieces (before max_tokens), prompt tokens, and the pieces' logprobs when
        asked for (synthetic mode only: a recording has none)."""
        if self.replay is not None:
            rec = self.replay.lookup(req.model, candidate_texts(req.system, req.messages))
            if rec is None:
                raise SimError(
                    "not_found",
                    f"no recorded response of {req.model} to this prompt in {self.replay.source}",
                    param="messages",
                )
            n = rec.completion_tokens or synthetic.chars_to_tokens(rec.response)
            prompt_tokens = rec.prompt_tokens or synthetic.chars_to_tokens(req.messages[-1][1])
            return synthetic.split_pieces(rec.response, n), prompt_tokens, None
        users = [text for role, text in req.messages if role == "user"]
        prompt = users[-1] if users else req.messages[-1][1]
        chars = len(req.system) + sum(len(text) for _, text in req.messages)
        seed = self.fleet.seed
        pieces = synthetic.answer(prompt, req.model, profile, seed, self.gold)
        logprobs = None
        if req.logprobs:
            logprobs = synthetic.logprobs(prompt, req.model, profile, seed, len(pieces))
        return pieces, max(1, (chars + 3) // 4), logprobs

    def complete(self, req: ChatRequest, now_s: float) -> Completion:
        """Admit ``req`` at monotonic time ``now_s``, or raise SimError."""
        state = self._state.get(req.model)
        if state is None:
            raise SimError(
                "not_found",
                f"The model `{req.model}` does not exist; served: {', '.join(self._state)}",
                param="model",
            )
        if now_s < self._burst_until_s:
            state.rate_limited += 1
            raise SimError(
                "rate_limit",
                f"Rate limit of {req.model} reached (a burst); retry after "
                f"{self._burst_retry_after_s} s",
                retry_after_s=self._burst_retry_after_s,
            )
        profile = state.profile
        pieces, prompt_tokens, logprobs = self._answer(req, profile)
        finish = "stop"
        if req.max_tokens is not None and len(pieces) > req.max_tokens:
            pieces, finish = pieces[: req.max_tokens], "length"
            logprobs = None if logprobs is None else logprobs[: req.max_tokens]
        total_tokens = prompt_tokens + len(pieces)
        wait_s = max(state.requests.wait_s(1, now_s), state.tokens.wait_s(total_tokens, now_s))
        if wait_s > 0:
            state.rate_limited += 1
            what = "requests per minute" if state.requests.wait_s(1, now_s) else "tokens per minute"
            raise SimError(
                "rate_limit",
                f"Rate limit of {req.model} reached ({what}); retry after {wait_s:.2f} s",
                retry_after_s=retry_after_header(wait_s),
            )
        state.requests.record(1, now_s)
        state.tokens.record(total_tokens, now_s)
        state.calls += 1
        delay_s = self._warm_up_s(state, now_s)
        if profile.error_rate and state.rng.random() < profile.error_rate:
            state.failed += 1
            kind = "overloaded" if state.rng.random() < 0.5 else "server_error"
            raise SimError(
                kind, f"injected failure of {req.model} (error_rate {profile.error_rate})"
            )
        if self.fleet.count_prompts:
            self.served_by_prompt[(req.model, prompt_digest(req.messages))] += 1
        delay_s += profile.ttft_s + state.rng.uniform(0.0, profile.jitter_s)
        return Completion(
            req.model,
            pieces,
            prompt_tokens,
            finish,
            delay_s,
            profile.per_token_s,
            _limit_headers(state, now_s),
            logprobs,
        )

    @staticmethod
    def _warm_up_s(state: _ModelState, now_s: float) -> float:
        """Extra delay for a cold model; calls during a warm-up wait for its end."""
        profile = state.profile
        idle = state.last_used_s is None or now_s - state.last_used_s > profile.idle_before_cold_s
        state.last_used_s = now_s
        if idle and now_s >= state.warm_at_s:
            state.warm_at_s = now_s + profile.cold_start_s
        return max(0.0, state.warm_at_s - now_s)


def _limit_headers(state: _ModelState, now_s: float) -> tuple[tuple[str, str], ...]:
    """OpenAI-style x-ratelimit-{limit,remaining}-{requests,tokens} for set limits."""
    out: list[tuple[str, str]] = []
    for what, window in (("requests", state.requests), ("tokens", state.tokens)):
        if window.limit is not None:
            remaining = max(0, window.limit - window.used(now_s))
            out += [
                (f"x-ratelimit-limit-{what}", str(window.limit)),
                (f"x-ratelimit-remaining-{what}", str(remaining)),
            ]
    return tuple(out)


def prompt_digest(messages: Sequence[tuple[str, str]]) -> str:
    """The first 16 hex digits of the SHA-256 of the last user message (UTF-8): how a caller
    matches its requests to ``served_prompts``."""
    users = [text for role, text in messages if role == "user"]
    text = users[-1] if users else (messages[-1][1] if messages else "")
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
