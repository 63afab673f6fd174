"""Bundling tables: bundles stay within count and tokens, keys never mix, urgent leave first."""

from __future__ import annotations

import pytest

from tierline.router.live.bundling import Item, bundle

RT, BATCH = ("t0", "nano", "realtime"), ("t0", "nano", "batch")


def _items(spec: str, key: tuple[str, str, str] = BATCH) -> list[Item]:
    """'a:3@5 b:1@2' → items a (3 tokens, deadline 5) and b (1 token, deadline 2)."""
    out = []
    for word in spec.split():
        name, rest = word.split(":")
        tokens, deadline = rest.split("@")
        out.append(Item(key, name, int(tokens), float(deadline)))
    return out


def _names(bundles: list[list[Item]]) -> list[str]:
    return [" ".join(it.request_id for it in group) for group in bundles]


@pytest.mark.parametrize(("spec", "max_count", "max_tokens", "expected"), [
    ("", 4, 100, []),
    ("a:1@1", 4, 100, ["a"]),
    ("a:1@1 b:1@2 c:1@3 d:1@4 e:1@5", 2, 100, ["a b", "c d", "e"]),  # count bound
    ("a:3@1 b:3@2 c:3@3", 10, 6, ["a b", "c"]),  # token bound: 3 + 3 fits, a third does not
    ("a:4@1 b:2@2 c:1@3", 10, 6, ["a b", "c"]),  # exactly at the bound still fits
    ("a:10@1 b:1@2", 10, 5, ["a", "b"]),  # larger than the bound alone: travels alone
    ("a:1@1 b:9@2 c:1@3", 10, 5, ["a", "b", "c"]),  # an oversized one never drags others
    ("a:1@1 b:1@2 c:1@3", 1, 100, ["a", "b", "c"]),  # the one-message-per-request baseline
    ("c:1@9 a:1@1 b:1@5", 2, 100, ["a b", "c"]),  # earliest deadline first
    ("a:1@1 b:1@1 c:1@1", 2, 100, ["a b", "c"]),  # equal deadlines keep input order
])
def test_bundles_respect_count_and_token_bounds(spec: str, max_count: int, max_tokens: int,
                                                expected: list[str]) -> None:
    assert _names(bundle(_items(spec), max_count=max_count, max_tokens=max_tokens)) == expected


def test_realtime_and_batch_never_share_a_bundle() -> None:
    items = _items("b1:1@9 b2:1@9", BATCH) + _items("r1:1@1", RT) + _items("b3:1@9", BATCH)
    bundles = bundle(items, max_count=10, max_tokens=100)
    assert sorted(_names(bundles)) == ["b1 b2 b3", "r1"]
    assert all(len({it.key for it in group}) == 1 for group in bundles)


def test_each_tier_and_model_gets_its_own_bundles() -> None:
    keys = [("t0", "nano", "batch"), ("t1", "mid", "batch"), ("t0", "nano2", "batch")]
    items = [Item(keys[i % 3], f"r{i}", 1, 0.0) for i in range(9)]
    bundles = bundle(items, max_count=2, max_tokens=100)
    assert sorted(len(g) for g in bundles) == [1, 1, 1, 2, 2, 2]
    assert sorted(it.request_id for g in bundles for it in g) == sorted(f"r{i}" for i in range(9))


def test_every_item_leaves_exactly_once_at_scale() -> None:
    items = [Item(("t", "m", "batch"), f"r{i}", 1 + i % 7, float(i % 13)) for i in range(10_000)]
    bundles = bundle(items, max_count=256, max_tokens=1_000)
    ids = [it.request_id for g in bundles for it in g]
    assert len(ids) == len(set(ids)) == 10_000
    assert all(len(g) <= 256 and sum(it.est_tokens for it in g) <= 1_000 for g in bundles)
