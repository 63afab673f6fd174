"""When a young stream retrains, and how much it shadows before it has records."""

from __future__ import annotations

import pytest

from tierline.router.evaluation.learning import retrains_at
from tierline.router.live.shadowing import rate_now


@pytest.mark.parametrize(("every", "first", "at"), [
    (1000, 1000, [1000, 2000, 3000]),
    (1000, 125, [125, 250, 500, 1000, 2000, 3000]),
    (300, 75, [75, 150, 300, 600, 900]),
    (100, 30, [30, 60, 100, 200, 300])])
def test_retraining_comes_early_then_every_n_requests(every: int, first: int,
                                                      at: list[int]) -> None:
    assert [k for k in range(3001) if retrains_at(k, every, first)][:len(at)] == at


@pytest.mark.parametrize(("warm", "records", "rate"), [
    (None, 0, 0.05), (0.25, 0, 0.25), (0.25, 199, 0.25), (0.25, 200, 0.05),
    (0.01, 0, 0.05)])
def test_the_warm_up_rate_holds_until_enough_requests_are_shadowed(
        warm: float | None, records: int, rate: float) -> None:
    assert rate_now(0.05, warm, 200, records) == rate
