"""Shadow calls share production's token budgets but never wait for them: a shadow call the
absorber cannot take now is skipped, and the answers are unchanged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.workers.scripted import completion, demo_policy, route_here, runtime, serve
from tierline.record.schema import attempts, results


def test_a_shadow_call_without_room_in_the_token_budget_is_skipped_not_waited_for(
        tmp_path: Path) -> None:
    policy: dict[str, Any] = demo_policy({"kind": "single"})
    policy["learning"] = {"shadow_rate": 1.0, "lanes": ["batch"], "usd_per_day_max": 5}
    # Room for one shadow call a minute: each reserves its prompt and 512 output tokens.
    policy["models"]["sim-frontier"]["limits"] = {"tokens_per_minute": 700}
    with serve(lambda _m, _a: (200, completion("The answer is 42"))) as url:
        rt = runtime(tmp_path, url, policy)
        began = time.monotonic()
        route_here(rt, [f"what is {n} times 7?" for n in range(3)])
        took_s = time.monotonic() - began
        with rt.engine.connect() as conn:
            answered = conn.execute(select(results.c.status, results.c.model)).all()
            shadow = conn.execute(select(attempts.c.model).where(attempts.c.shadow)).all()
    assert [tuple(r) for r in answered] == [("ok", "sim-nano")] * 3
    assert [r.model for r in shadow] == ["sim-frontier"]  # one fitted; two skipped
    assert took_s < 5  # nothing waited for the budget's next minute


def test_a_warm_up_rate_shadows_until_enough_requests_are_shadowed(tmp_path: Path) -> None:
    policy: dict[str, Any] = demo_policy({"kind": "single"})
    policy["learning"] = {"shadow_rate": 0.0, "lanes": ["batch"], "usd_per_day_max": 5,
                          "warm_shadow_rate": 1.0, "warm_records": 2}
    with serve(lambda _m, _a: (200, completion("The answer is 42"))) as url:
        rt = runtime(tmp_path, url, policy)
        for n in range(4):  # one bundle each: the count is read once per bundle
            route_here(rt, [f"what is {n} times 7?"])
        with rt.engine.connect() as conn:
            shadow = conn.execute(select(attempts.c.request_id).where(attempts.c.shadow)).all()
    assert len(shadow) == 2  # the first two requests were shadowed, then the rate is 0
