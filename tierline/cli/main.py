"""The ``tierline`` command line. User errors print one line and exit 2, never a traceback.

Heavy libraries (SQLAlchemy, Celery, httpx, numpy) are imported inside the commands that use
them, so ``tierline --help`` answers at once; the commands defined in other modules are
imported only when called (see ``_register_optional``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tierline.cli.console import err, out
from tierline.cli.console import progress as _progress
from tierline.cli.keys import keys as keys_group
from tierline.cli.operate import OPERATIONS
from tierline.router.errors import TierlineError
from tierline.router.lanes import LANES

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tierline.config.settings import Settings
    from tierline.producer.client import Client

MAX_SHOWN_REJECTS = 20


# The commands ``_register_optional`` adds, listed by ``tierline --help`` without importing them.
OPTIONAL_COMMANDS = {
    "bench": "Benchmarks over recorded data.",
    "classify": "Label each row of a CSV/JSONL file with one of LABELS; one output row per "
                "input row.",
    "router": "Learned routing artifacts.",
    "sim": "Serve simulated models over OpenAI- and Anthropic-compatible HTTP until stopped.",
}


class _Group(click.Group):
    """Turns tierline's own errors into one clear line and exit code 2; registers the
    optional commands when one of them is called."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TierlineError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            sys.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click reports these itself
        except Exception as exc:
            from sqlalchemy.exc import SQLAlchemyError

            from tierline.config.settings import settings_in_force

            if isinstance(exc, SQLAlchemyError):
                reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                where = settings_in_force().database_url.split("@")[-1]
                err.print(f"[red]error:[/red] database {where}: {reason} (is it migrated? "
                          "`tierline db upgrade`)", highlight=False)
                sys.exit(2)
            if isinstance(exc, OSError) and exc.filename:
                err.print(f"[red]error:[/red] {exc.filename}: {exc.strerror}", highlight=False)
                sys.exit(2)
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        return sorted(names | set(OPTIONAL_COMMANDS) if self is main else names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and self is main and not _registered:
            _registered.append(True)
            _register_optional()
            command = super().get_command(ctx, name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is None and name in OPTIONAL_COMMANDS:  # listed, not yet imported
                command = click.Command(name, help=OPTIONAL_COMMANDS[name])
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_registered: list[bool] = []


@click.group(cls=_Group)
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path),
              help="Policy file (default: $TIERLINE_POLICY or policies/$TIERLINE_ENV.yaml).")
def main(policy: Path | None) -> None:
    """tierline: route LLM work to the cheapest model tier that does it well."""
    from dataclasses import replace

    from tierline.config.settings import load_settings, use_settings

    settings = load_settings()  # the one read of the environment
    use_settings(settings if policy is None else replace(settings, policy_path=policy))


def _settings() -> Settings:
    """The settings ``main`` built."""
    from tierline.config.settings import settings_in_force

    return settings_in_force()


def _session() -> AbstractContextManager[Any]:
    """In production, nothing to start; with no servers configured, the embedded stack."""
    from tierline.cli.session import session

    return session(_settings())


def _client(rt: Any = None) -> Client:
    """A client on the runtime ``rt`` (the embedded stack's), else on the process's, after
    checking that an embedded record exists: asking never leaves an empty one."""
    from tierline.cli.session import client_for

    return client_for(_settings(), rt)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lane", type=click.Choice(LANES), default=None,
              help="Lane for lines that name none (default: standard).")
@click.option("--job", "job_name", default=None, help="A name for the job.")
@click.option("--tenant", default=None, help="Tenant for lines that name none.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where rejected lines go (default: FILE.rejects.jsonl).")
@click.option("--wait/--no-wait", default=False, help="Wait until every request is answered.")
def submit(file: Path, lane: str | None, job_name: str | None, tenant: str | None,
           rejects: Path | None, wait: bool) -> None:
    """Submit a JSONL file of requests; prints the job id and counts."""
    from tierline.producer.intake import RejectLog, read_jsonl

    reject_log = RejectLog(rejects or file.with_suffix(file.suffix + ".rejects.jsonl"))

    def on_reject(line: int, reason: str, source: Any) -> None:
        reject_log.add(line, reason, source)
        if reject_log.count <= MAX_SHOWN_REJECTS:
            err.print(f"{file}:{line}: rejected: {reason}", highlight=False, markup=False)

    with _session() as rt:
        client = _client(rt)
        with _progress() as progress:
            task = progress.add_task("submitting", total=file.stat().st_size)
            report = client.submit_many(read_jsonl(file), lane=lane, tenant=tenant, job=job_name,
                                        on_reject_input=on_reject,
                                        on_progress=lambda _n, b: progress.advance(task, b))
        reject_log.close()
        out.print(f"job {report.job_id}: {report.accepted} accepted, {report.duplicates} "
                  f"duplicate, {report.rejected} rejected", highlight=False)
        if reject_log.count:
            err.print(f"rejected lines are in {reject_log.path}", highlight=False)
        if report.not_enqueued:
            err.print(f"[yellow]{report.not_enqueued} accepted requests could not be enqueued "
                      "(broker unreachable); they are safe in the database and `tierline sweep` "
                      "enqueues them[/yellow]")
        earlier = [j for j in report.earlier_jobs if j != report.job_id]
        if report.job_id in report.earlier_jobs:
            err.print(f"every request was submitted before, in job {report.job_id}: its answers "
                      f"are that job's (`tierline results {report.job_id}`)", highlight=False)
        elif earlier:
            err.print(f"{report.duplicates} requests were submitted before, in job "
                      f"{', '.join(earlier)}: their answers are there", highlight=False)
        if report.accepted == 0 and report.duplicates == 0 and report.rejected:
            sys.exit(1)
        if rt is not None:  # nothing else answers an embedded record's unfinished requests
            from tierline.producer.embedded import resume_unfinished

            resume_unfinished(client, report.earlier_jobs)
        if wait or rt is not None:
            for job_id in earlier:
                _wait(client, job_id)
            _wait(client, report.job_id)


def _wait(client: Client, job_id: str) -> None:
    with _progress() as progress:
        task = progress.add_task("answering", total=None)

        def show(status: Any) -> None:
            progress.update(task, total=status.total, completed=status.finished)

        status = client.wait(job_id, on_progress=show)
    out.print(_status_line(status), highlight=False)


def _status_line(status: Any) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.by_status.items()))
    line = (f"job {status.job_id} ({status.name or 'unnamed'}): {status.state}: "
            f"{status.total} requests: {counts or 'none'}")
    return line + (f" ({status.error})" if status.error else "")


@main.command()
@click.argument("job")
def status(job: str) -> None:
    """Counts of a job's requests by state."""
    status = _client().status(job)
    out.print(_status_line(status), highlight=False)
    if not status.complete and _settings().embedded:
        err.print(f"with no broker set, only a running tierline process answers it: "
                  f"`tierline resume {job}` answers the rest here", highlight=False)


@main.command()
@click.argument("job")
def cancel(job: str) -> None:
    """Cancel a job: unanswered requests end cancelled; finished results are kept."""
    out.print(_status_line(_client().cancel(job)), highlight=False)


@main.command()
@click.argument("job")
def resume(job: str) -> None:
    """Enqueue a job's unanswered requests again, e.g. after the broker lost its queues.
    With no broker set, answers them in this process and waits."""
    _client().status(job)  # a missing record or job is an error before anything starts
    with _session() as rt:
        client = _client(rt)
        n = client.resume(job)
        if rt is None:
            out.print(f"{n} unanswered requests of job {job} enqueued again", highlight=False)
            return
        out.print(f"{n} unanswered requests of job {job}: answering them in this process",
                  highlight=False)
        _wait(client, job)


@main.command()
@click.argument("job")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JSONL here (default: standard output).")
def results(job: str, out_path: Path | None) -> None:
    """A job's results as JSON lines, in input order."""
    handle = out_path.open("w", encoding="utf-8") if out_path else sys.stdout
    n = 0
    try:
        for row in _client().results(job):
            handle.write(json.dumps(row) + "\n")
            n += 1
    finally:
        if out_path:
            handle.close()
    if out_path:
        err.print(f"{n} results written to {out_path}", highlight=False)


@main.command()
@click.option("--since", default=None, help="From this UTC date or time (ISO 8601), inclusive.")
@click.option("--until", default=None, help="Up to this UTC date or time, exclusive.")
@click.option("--by", "by", multiple=True, default=("model",), show_default=True,
              type=click.Choice(["model", "tenant", "job", "lane", "day", "shadow"]),
              help="Group by (repeatable: --by day --by model; --by shadow sets the shadow "
                   "calls apart).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def charges(since: str | None, until: str | None, by: tuple[str, ...], fmt: str,
            out_path: Path | None) -> None:
    """The charge ledger: calls, tokens and USD per group, and whether the totals reconcile."""
    from tierline.cli.charges import show_charges

    _client()  # an embedded record must exist
    show_charges(since=since, until=until, by=by, fmt=fmt, out_path=out_path, console=out)


@main.command()
@click.option("--day", default=None, help="The UTC day, YYYY-MM-DD (default: today so far).")
@click.option("--week", default=None, help="With --html: an ISO week, YYYY-Www (e.g. 2026-W49).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the report with its charts as one HTML file.")
def report(day: str | None, week: str | None, fmt: str, html_path: Path | None) -> None:
    """The daily report: requests, answers, spend, savings, latency and failures of a UTC day
    (stored by beat; computed and stored here if missing)."""
    if html_path is not None:
        from tierline.cli.report import write_html

        write_html(html_path, day=day, week=week, console=out)
        return
    if week is not None:
        raise click.UsageError("--week needs --html")
    import time

    from tierline.cli.report import parse_day, show_report

    parse_day(day, time.time())  # a bad day is refused before the record is looked for
    _client()  # an embedded record must exist
    show_report(day=day, fmt=fmt, console=out)


@main.command()
@click.option("--requests", "n_requests", type=int, default=330, show_default=True)
@click.option("--db", "database", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the SQLite record here (default: the data directory's, "
                   "$TIERLINE_HOME/tierline.sqlite, where every command looks).")
def demo(n_requests: int, database: Path | None) -> None:
    """Run a sample workload through the whole pipeline in this process, no servers needed."""
    from tierline.cli.demo import run_demo

    run_demo(n_requests=n_requests, database=database, console=out, settings=_settings())


main.add_command(keys_group, "keys")
for _command in OPERATIONS:
    main.add_command(_command)


def _register_optional() -> None:
    """Commands whose modules live elsewhere: registered here, imported once, when a command
    that is not defined above is called (list new top-level ones in OPTIONAL_COMMANDS)."""
    from tierline.bench.learning import command as bench_learning
    from tierline.bench.routing import command as bench_routing
    from tierline.cli.bundles import command as bundles_command
    from tierline.cli.classify import command as classify_command
    from tierline.sim.cli import command as sim_command
    from tierline.training.router_train import command as router_train

    main.add_command(sim_command, "sim")
    main.add_command(classify_command, "classify")

    @main.group()
    def bench() -> None:
        """Benchmarks over recorded data."""

    bench.add_command(bench_routing, "routing")
    bench.add_command(bench_learning, "learning")

    @main.group("router")
    def router_group() -> None:
        """Learned routing artifacts."""

    router_group.add_command(router_train, "train")
    router_group.add_command(bundles_command, "bundles")


