"""Replay of recorded model outcomes: serve model M's recorded response to prompt P.

Prompts are looked up by the SHA-1 of their UTF-8 text. A request's candidate keys, in
order: the last user message's text; the same text stripped (the index also holds each
recorded prompt stripped); all message texts (system first) joined with a blank line
("\\n\\n"). Unknown prompts are 404s, never invented.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tierline.sim.fleet import SimConfigError


@dataclass(frozen=True)
class Recorded:
    """One model's recorded answer to one prompt, with its recorded token counts."""

    response: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class ReplayIndex:
    """Recorded outcomes keyed by prompt hash, then model name."""

    source: str
    models: tuple[str, ...] = ()
    items: dict[bytes, dict[str, Recorded]] = field(default_factory=dict)

    def lookup(self, model: str, candidates: Iterable[str]) -> Recorded | None:
        """The recorded answer of ``model`` to the first candidate text that has one."""
        for text in candidates:
            outcomes = self.items.get(prompt_key(text))
            if outcomes is not None and model in outcomes:
                return outcomes[model]
        return None


def prompt_key(text: str) -> bytes:
    """The lookup key of a prompt text: SHA-1 of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).digest()


def candidate_texts(system: str, messages: list[tuple[str, str]]) -> list[str]:
    """Texts tried for lookup, in order (see module docstring)."""
    out: list[str] = []
    users = [text for role, text in messages if role == "user"]
    if users:
        out += [users[-1], users[-1].strip()]
    out.append("\n\n".join(([system] if system else []) + [text for _, text in messages]))
    return out


def _recorded(source: str, where: str, outcome: object) -> Recorded:
    if not isinstance(outcome, dict) or not isinstance(outcome.get("response"), str):
        raise SimConfigError(source, where, "an outcome needs a string 'response'")
    try:
        return Recorded(
            outcome["response"],
            int(outcome.get("prompt_tokens") or 0),
            int(outcome.get("completion_tokens") or 0),
        )
    except (TypeError, ValueError) as exc:
        raise SimConfigError(source, where, f"token counts must be integers ({exc})") from exc


def load_replay(path: str | Path) -> ReplayIndex:
    """Read a routing dataset (JSONL, one item per line) into a replay index."""
    source = str(path)
    index = ReplayIndex(source=source)
    models: dict[str, None] = {}
    try:
        fh = Path(path).open(encoding="utf-8")
    except OSError as exc:
        raise SimConfigError(source, "<file>", f"cannot read: {exc.strerror}") from exc
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise SimConfigError(source, f"line {n}", f"not JSON ({exc})") from exc
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise SimConfigError(source, f"line {n}.prompt", "missing or not a string")
            outcomes = item.get("outcomes")
            if not isinstance(outcomes, dict):
                raise SimConfigError(source, f"line {n}.outcomes", "missing or not a mapping")
            entry = index.items.setdefault(prompt_key(item["prompt"]), {})
            index.items.setdefault(prompt_key(item["prompt"].strip()), entry)
            for model, outcome in outcomes.items():
                entry[model] = _recorded(source, f"line {n}.outcomes.{model}", outcome)
                models.setdefault(model, None)
    if not models:
        raise SimConfigError(source, "<file>", "no items with outcomes")
    index.models = tuple(models)
    return index
