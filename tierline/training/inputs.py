"""What training and the benches read: recorded-outcome JSONL files and price tables, checked."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import yaml

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Prices, parse_items


def _read_text(path: Path, what: str) -> str:
    """A UTF-8 file's text (a leading BOM dropped); errors name the file and the line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what}: {exc.strerror}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"{path}: line {line}: not UTF-8 (byte {raw[exc.start]:#04x})") from exc


def read_items(path: Path) -> list[Item]:
    """Decode a recorded-outcome JSONL file; errors name the file and line."""
    lines = []
    # Split on newlines only: str.splitlines would also break at U+2028 inside a JSON string.
    for number, line in enumerate(_read_text(path, "data").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            lines.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: line {number}: not JSON ({exc.msg})") from exc
    if not lines:
        raise InvalidInput(f"{path}: no items (the file is empty)")
    return parse_items(lines, str(path))


def read_prices(path: Path) -> Prices:
    """Read ``models: {name: {usd_per_1m_input, usd_per_1m_output}}`` (finite, >= 0)."""
    try:
        data = yaml.safe_load(_read_text(path, "prices"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: cannot read prices: {exc}") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise InvalidInput(f"{path}: expected a non-empty 'models' mapping")
    prices = {}
    for name, spec in models.items():
        try:
            price = (float(spec["usd_per_1m_input"]), float(spec["usd_per_1m_output"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise InvalidInput(f"{path}: models.{name}: needs numeric usd_per_1m_input and "
                               "usd_per_1m_output") from exc
        if not all(math.isfinite(x) and x >= 0 for x in price):
            raise InvalidInput(f"{path}: models.{name}: prices must be finite and >= 0, "
                               f"got {price}")
        prices[str(name)] = price
    return prices


def check_priced(items: Sequence[Item], prices: Prices, data_path: Path,
                 prices_path: Path) -> None:
    """Every model in the data needs a price (priced models absent from the data are fine)."""
    missing = [m for m in items[0].outcomes if m not in prices]
    if missing:
        raise InvalidInput(f"{prices_path}: no price for model {missing[0]!r} of {data_path}"
                           + (f" (nor for {len(missing) - 1} more)" if len(missing) > 1 else ""))


def check_same_shape(train: Sequence[Item], test: Sequence[Item], train_path: Path,
                     test_path: Path) -> None:
    """--test must hold the models and the grader kind of --train."""
    a, b = set(train[0].outcomes), set(test[0].outcomes)
    if a != b:
        raise InvalidInput(f"{test_path}: models differ from {train_path}'s: only in test "
                           f"{sorted(b - a)}, only in train {sorted(a - b)}")
    if train[0].grader_kind != test[0].grader_kind:
        raise InvalidInput(f"{test_path}: grader kind {test[0].grader_kind!r} differs from "
                           f"{train_path}'s {train[0].grader_kind!r}")
