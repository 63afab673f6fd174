"""Recorded-outcome datasets (routing/*.jsonl) as typed objects, validated line by line.

Parsing takes already decoded JSON values (the CLI reads the files); every error names
the line. Prices map a model to (USD per 1M input, USD per 1M output).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierline.router.errors import InvalidInput
from tierline.router.learned.answers import EXTRACTOR_FOR_GRADER

Prices = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class Outcome:
    """One model's recorded response to one prompt; ``answer`` and ``score`` grade only."""

    response: str
    answer: str | None
    score: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Item:
    """One prompt with every model's recorded outcome and its grader."""

    id: str
    prompt: str
    grader_kind: str
    key: str | None  # the right choice for ``choice`` graders
    meta: Mapping[str, Any]
    outcomes: Mapping[str, Outcome]


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise InvalidInput(f"{where}: missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidInput(f"{where}: field {name!r} has the wrong type ({type(value).__name__})")
    return value


def _number(obj: Mapping[str, Any], name: str, where: str, high: float = math.inf) -> float:
    """A finite number in [0, high] (JSON's NaN and Infinity are refused)."""
    value = float(_field(obj, name, (int, float), where))
    if not (math.isfinite(value) and 0 <= value <= high):
        bounds = "a finite number >= 0" if high == math.inf else f"a number in [0, {high:g}]"
        raise InvalidInput(f"{where}: field {name!r} must be {bounds}, got {value}")
    return value


def parse_item(raw: Any, line: int, source: str = "<data>") -> Item:
    """Validate one decoded JSON line into an :class:`Item`."""
    where = f"{source}: line {line}"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: not a JSON object")
    grader = _field(raw, "grader", dict, where)
    kind = _field(grader, "kind", str, f"{where}: grader")
    if kind not in EXTRACTOR_FOR_GRADER:
        raise InvalidInput(f"{where}: grader kind {kind!r} is not supported "
                           f"(known: {', '.join(EXTRACTOR_FOR_GRADER)})")
    key = _field(grader, "answer", str, f"{where}: grader") if kind == "choice" else None
    outcomes = {}
    for model, out in _field(raw, "outcomes", dict, where).items():
        at = f"{where}: outcomes.{model}"
        if not isinstance(out, dict):
            raise InvalidInput(f"{at}: not an object")
        answer = out.get("answer")
        outcomes[model] = Outcome(
            response=_field(out, "response", str, at),
            answer=answer if isinstance(answer, str) else None,
            score=_number(out, "score", at, high=1.0),
            prompt_tokens=int(_number(out, "prompt_tokens", at)),
            completion_tokens=int(_number(out, "completion_tokens", at)),
        )
    if not outcomes:
        raise InvalidInput(f"{where}: 'outcomes' lists no model")
    meta = raw.get("meta") or {}
    return Item(str(_field(raw, "id", (str, int), where)), _field(raw, "prompt", str, where),
                kind, key, meta if isinstance(meta, dict) else {}, outcomes)


def parse_items(lines: Iterable[tuple[int, Any]], source: str = "<data>") -> list[Item]:
    """Parse (line number, decoded JSON) pairs; every item must list the same models and use
    the same grader kind as the first."""
    items: list[Item] = []
    for line, raw in lines:
        item = parse_item(raw, line, source)
        if items:
            first = items[0]
            missing = sorted(set(first.outcomes) - set(item.outcomes))
            extra = sorted(set(item.outcomes) - set(first.outcomes))
            if missing or extra:
                raise InvalidInput(f"{source}: line {line}: "
                                   + "; ".join([f"no outcome for model {m!r}" for m in missing]
                                               + [f"model {m!r} is not in the first item"
                                                  for m in extra]))
            if item.grader_kind != first.grader_kind:
                raise InvalidInput(f"{source}: line {line}: grader kind {item.grader_kind!r} "
                                   f"differs from the first item's {first.grader_kind!r}")
        items.append(item)
    return items


def models_of(items: Sequence[Item], prices: Prices) -> list[str]:
    """The dataset's models, cheapest mean recorded cost first; every one must have a price."""
    if not items:
        raise InvalidInput("the dataset has no items")
    names = list(items[0].outcomes)
    for m in names:
        if m not in prices:
            raise InvalidInput(f"model {m!r} in the data has no price in the prices file")
    cost = mean_usd_per_call(items, names, prices)
    return sorted(names, key=lambda m: (cost[m], m))


def call_usd(outcome: Outcome, price: tuple[float, float]) -> float:
    """Recorded tokens at list prices."""
    return (outcome.prompt_tokens * price[0] + outcome.completion_tokens * price[1]) / 1e6


def mean_usd_per_call(items: Sequence[Item], models: Sequence[str], prices: Prices) -> dict[
    str, float
]:
    """Average recorded cost of one call to each model."""
    return {m: float(np.mean([call_usd(it.outcomes[m], prices[m]) for it in items]))
            for m in models}


def fold_items(items: Sequence[Item], k: int, seed: int) -> list[tuple[list[Item], list[Item]]]:
    """``k`` deterministic (fit, validation) pairs; each item validates in exactly one."""
    if k < 2:
        raise InvalidInput(f"--folds must be at least 2, got {k}")
    fold = np.random.default_rng(seed).permutation(len(items)) % k
    return [([it for it, f in zip(items, fold, strict=True) if f != j],
             [it for it, f in zip(items, fold, strict=True) if f == j]) for j in range(k)]


def split_items(items: Sequence[Item], test_fraction: float, seed: int) -> tuple[
    list[Item], list[Item]
]:
    """A deterministic shuffled split into (train, test)."""
    if not 0 < test_fraction < 1:
        raise InvalidInput(f"--split must be between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(items))
    n_test = int(round(len(items) * test_fraction))
    test = set(order[:n_test].tolist())
    return ([it for i, it in enumerate(items) if i not in test],
            [it for i, it in enumerate(items) if i in test])
