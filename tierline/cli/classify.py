"""``tierline classify``: label every row of a file with the cheapest model that labels it right.

    tierline classify INPUT --labels LABELS --out OUTPUT [--gold-column category] [--limit N]
    tierline classify --job-file examples/banking77/job.yaml [--limit 2000]

With no Redis or Postgres configured it runs on the embedded default in this process
(the simulator answers each row's gold label, when a gold column is given, with its
per-model accuracy); with them configured, on the distributed workers.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import click

from tierline.config.settings import Settings, settings_in_force
from tierline.producer.classify_job import finish, submit, summary_lines
from tierline.producer.client import Client
from tierline.producer.jobspec import JobSpec, job_from_dict, load_job
from tierline.producer.rows import check_readable, read_errors, read_rows
from tierline.router.errors import InvalidInput
from tierline.router.policy import LANES


def _absolute(value: str | None) -> str | None:
    """A path flag made absolute against the working directory (job files use their own)."""
    return None if value is None else str(Path(value).expanduser().resolve())


def _labels_flag(value: str | None) -> Any:
    if value is None:
        return None
    return _absolute(value) if Path(value).expanduser().is_file() else value


def job_of(input_path: str | None, job_file: Path | None, flags: dict[str, Any],
           settings: Settings) -> JobSpec:
    """The job from a job file and/or flags; flags win over the file's keys; ``${VAR}``
    expands from ``settings``."""
    overrides = {**flags, "input": _absolute(input_path), "out": _absolute(flags.get("out")),
                 "errors": _absolute(flags.get("errors")), "labels": _labels_flag(flags.get(
                     "labels"))}
    if job_file is not None:
        return load_job(job_file, overrides, settings=settings)
    given = {k: v for k, v in overrides.items() if v is not None}
    missing = [k for k in ("input", "labels", "out") if k not in given]
    if missing:
        flag = {"input": "INPUT", "labels": "--labels", "out": "--out"}
        raise InvalidInput(f"classify: give {', '.join(flag[k] for k in missing)} "
                           "(or --job-file)")
    return job_from_dict(given, "command line", Path.cwd(), settings)


def _gold_map(spec: JobSpec) -> dict[str, str] | None:
    """Gold labels by text for the embedded simulator (None without a gold column)."""
    if not spec.gold_column:
        return None
    from tierline.sim.synthetic import normalise

    return {normalise(r.text): r.gold for r in read_rows(spec) if r.text and r.gold}


def _session(spec: JobSpec, settings: Settings) -> AbstractContextManager[Any]:
    """Distributed workers when a broker is configured; else the embedded stack."""
    from tierline.cli.console import err

    if not settings.embedded:
        return nullcontext(None)
    from tierline.producer.embedded import embedded

    gold = _gold_map(spec)
    note = (f"; the simulator answers the {spec.gold_column!r} labels with each model's "
            "accuracy" if gold else "")
    err.print(f"[dim]no TIERLINE_BROKER_URL set: running embedded in this process "
              f"(database {settings.database_url}){note}[/dim]")
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    return embedded(settings.policy_path, database=db, gold=gold, settings=settings)


@click.command()
@click.argument("input_path", metavar="INPUT", required=False,
                type=click.Path(dir_okay=False))
@click.option("--job-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A job YAML; flags given here override its keys.")
@click.option("--labels", help="Comma-separated labels, or a file: JSON list/object, or lines.")
@click.option("--out", help="Output file; .jsonl or .csv picks the format.")
@click.option("--errors", help="Rejected rows (default: OUTPUT.errors.jsonl).")
@click.option("--text-column", help="Column (CSV) or field (JSONL) with the text [text].")
@click.option("--id-column", help="Column with each row's id, copied to the output.")
@click.option("--gold-column", help="Column with the right label: accuracy is reported.")
@click.option("--instructions", help="Text put before the classification instruction.")
@click.option("--lane", type=click.Choice(LANES), help="Latency lane [batch].")
@click.option("--tenant", help="Tenant the job is billed to [default].")
@click.option("--name", help="Job name [the input's file name].")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows.")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True),
              help="Give up waiting (and expire the job's unanswered rows) after this long "
                   "[the lane's latency budget].")
def command(input_path: str | None, job_file: Path | None, **flags: Any) -> None:
    """Label each row of a CSV/JSONL file with one of LABELS; one output row per input row."""
    from tierline.cli.console import err, out
    from tierline.cli.console import progress as _progress

    settings = settings_in_force()  # the command line's (its --policy)
    spec = job_of(input_path, job_file, flags, settings)
    check_readable(spec)  # a missing column is one error before anything starts
    started = time.monotonic()
    with _session(spec, settings) as rt:
        client = Client(rt) if rt else Client()
        with _progress() as progress:
            task = progress.add_task("submitting", total=spec.input.stat().st_size)
            job = submit(client, spec, on_bytes=lambda b: progress.advance(task, b))
        if job.not_enqueued:
            err.print(f"[yellow]{job.not_enqueued:,} rows could not be enqueued (broker "
                      "unreachable); they are safe in the database and `tierline sweep` "
                      "enqueues them[/yellow]")
        if job.accepted == 0:
            summary = finish(client, spec, job, read_errors(job.errors))
            err.print(f"[red]error:[/red] {spec.input}: no valid row: all {job.rows:,} rows "
                      f"were rejected (job {job.job_id}: {summary.state}); reasons in "
                      f"{job.errors}", highlight=False)
            sys.exit(1)
        lane = client.rt.policy.lanes[spec.lane]  # type: ignore[index]
        timeout_s = spec.timeout_s or lane.latency_budget_s
        with _progress() as progress:
            task = progress.add_task("labeling", total=job.accepted)
            status = client.wait(job.job_id, timeout_s=timeout_s, poll_s=0.25,
                                 on_progress=lambda s: progress.update(
                                     task, total=s.total, completed=s.finished))
        summary = finish(client, spec, job, read_errors(job.errors))
    job.out.with_name(job.out.name + ".summary.json").write_text(
        json.dumps(summary.to_dict(), indent=1) + "\n", encoding="utf-8")
    for line in summary_lines(spec, summary, time.monotonic() - started):
        out.print(line, highlight=False, markup=False)
    if not status.complete:
        err.print(f"[yellow]job {job.job_id} is still {status.state} after {timeout_s:g} s: "
                  f"unanswered rows are marked with their state; `tierline results "
                  f"{job.job_id}` has the rest later[/yellow]")
        sys.exit(1)
