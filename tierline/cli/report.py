"""``tierline report``: the daily report of a UTC day, as a table or JSON, or a day's or an
ISO week's report as one HTML file with charts (``--html``).

A finished day's report is read from the database; if beat has not stored it, it is
computed and stored now. Today's is computed so far and never stored: it is not over.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tierline.record.period_report import (
    DAILY,
    DAY_S,
    compute,
    day_start_s,
    record_day,
    stored,
    top_price,
)
from tierline.router.errors import InvalidInput
from tierline.workers.runtime import runtime

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(text: str | None, now_s: float) -> dt.date:
    """``--day`` as a UTC date (today when absent); never one in the future."""
    today = dt.datetime.fromtimestamp(now_s, dt.UTC).date()
    if text is None:
        return today
    try:
        if not _DAY.fullmatch(text):
            raise ValueError
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"--day: {text!r} is not a date (YYYY-MM-DD, UTC)") from exc
    if day > today:
        raise InvalidInput(f"--day: {day} is in the future (today is {today} UTC)")
    return day


def report_of(day: dt.date, now_s: float) -> tuple[dict[str, Any], str]:
    """The day's report and where it came from: stored, stored now, or computed so far."""
    rt = runtime()
    start_s = day_start_s(day)
    if start_s + DAY_S <= now_s:
        with rt.engine.connect() as conn:
            found = stored(conn, DAILY, start_s)
        if found is not None:
            made = dt.datetime.fromtimestamp(found[1], dt.UTC)
            return found[0], f"stored {made:%Y-%m-%d %H:%M} UTC"
        body, new = record_day(rt.engine, rt.policy, day, now_s)
        return body, "computed and stored now" if new else "stored"
    with rt.engine.connect() as conn:
        body = compute(conn, start_s, now_s, *top_price(rt.policy))
    return body, f"so far (until {dt.datetime.fromtimestamp(now_s, dt.UTC):%H:%M:%S} UTC), " \
                 "not stored"


def show_report(*, day: str | None, fmt: str, console: Console) -> None:
    """Print a day's report."""
    now_s = time.time()
    the_day = parse_day(day, now_s)
    body, origin = report_of(the_day, now_s)
    if fmt == "json":
        console.file.write(json.dumps({"kind": DAILY, "day": the_day.isoformat(),
                                       "origin": origin, **body}, indent=1) + "\n")
        return
    for line in render(the_day, body, origin):
        console.print(line, highlight=False)


def render(day: dt.date, body: dict[str, Any], origin: str) -> list[Any]:
    """The report as rich renderables: requests by lane, then answers, spend and failures."""
    req = body["requests"]
    statuses = sorted({s for counts in req["by_lane"].values() for s in counts} | {"ok"})
    lanes = Table("lane", title=f"tierline daily report {day} (UTC), {origin}: requests by "
                                "when they ended")
    for name in [*statuses, "p50 latency", "p95 latency"]:
        lanes.add_column(name, justify="right")
    for lane, counts in req["by_lane"].items():
        lat = body["latency_s"].get(lane)
        lanes.add_row(lane, *(str(counts.get(s, 0)) for s in statuses),
                      f"{lat['p50'] * 1000:.0f} ms" if lat else "-",
                      f"{lat['p95'] * 1000:.0f} ms" if lat else "-")
    answers = body["answers"]
    spend = body["spend"]
    top = body["top_tier"]
    lines: list[Any] = [lanes] if req["by_lane"] else [
        f"tierline daily report {day} (UTC), {origin}: no request ended"]
    lines.append(f"{req['ended']} requests ended; {req['more_than_one_attempt']} "
                 f"({req['more_than_one_attempt_share']:.1%}) needed more than one attempt")
    if answers["by_model"]:
        tiers = ", ".join(f"{t} {n}" for t, n in answers["by_tier"].items())
        models = ", ".join(f"{m} {n}" for m, n in answers["by_model"].items())
        lines.append(f"answers by tier: {tiers}; by model: {models}")
    state = "balanced" if spend["balanced"] else "[red]NOT balanced[/red]"
    lines.append(f"ledger ${spend['ledger_usd']} over {spend['calls']} charges = paid attempts "
                 f"${spend['paid_attempts_usd']} over {spend['paid_attempts']}: {state}")
    lines.append(f"these requests cost ${top['requests_usd']}; all on the top tier "
                 f"({top['model']}) ${top['usd_all_top']}: ${top['saved_usd']} saved "
                 f"({top['saved_share']:.0%})")
    shadow = body.get("shadow")  # reports stored before shadow calls existed have none
    if shadow and (shadow["calls"] or shadow["shadowed_requests"]):
        tiers = ", ".join(f"{t} {a['agree_share']:.0%} of {a['answers']}"
                          for t, a in shadow["agreement_by_tier"].items())
        quality = shadow["quality_vs_top"]
        lines.append(f"shadow calls: {shadow['calls']} for ${shadow['usd']}; agreement with the "
                     f"top tier by tier: {tiers or '-'}; answers given agreed with it on "
                     f"{'-' if quality is None else f'{quality:.1%}'} of "
                     f"{shadow['shadowed_requests']} shadowed requests; saved net of shadow "
                     f"calls ${shadow['net_saved_usd']}")
    if body["failures"]:
        lines.append("failures: " + ", ".join(f"{c} {n}" for c, n in body["failures"].items()))
    return lines


def write_html(out_path: Path, *, day: str | None, week: str | None, console: Console) -> None:
    """Write the report of a UTC day (default today so far) or an ISO week as one HTML file."""
    from tierline.schedules.report_html import gather, page, week_days

    if day is not None and week is not None:
        raise InvalidInput("--day and --week: give one of them")
    now_s = time.time()
    rt = runtime()
    if week is not None:
        try:
            days = week_days(week)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        if day_start_s(days[0]) > now_s:
            raise InvalidInput(f"--week: {week} has not started yet")
        title = f"tierline weekly report {week.upper()} ({days[0]} to {days[-1]}, UTC)"
    else:
        the_day = parse_day(day, now_s)
        days = [the_day]
        title = f"tierline daily report {the_day} (UTC)"
    html = page(gather(rt.engine, rt.policy, days, now_s, title))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    console.print(f"wrote {out_path} ({len(html) // 1024} KB)", highlight=False)
