"""A classification job: what to read, which labels, where to write — from YAML or flags.

A job file (``tierline classify --job-file JOB.yaml``)::

    name: banking77-nightly
    input: ${TIERLINE_DATA}/classification/banking77/test.csv   # CSV or JSONL
    text_column: text            # default text; id_column and gold_column are optional
    gold_column: category
    labels: ${TIERLINE_DATA}/classification/banking77/categories.json
    instructions: You label messages sent to a bank's support team.
    lane: batch                  # default batch
    out: ${TIERLINE_OUT_DIR:-/tmp/tierline}/banking77-{date}.jsonl
    schedule: "30 2 * * *"       # minute hour day-of-month month day-of-week (UTC), for beat

``labels`` is a list, a comma-separated string, or a file: a JSON list, a JSON object
(its keys), or one label per line. ``${VAR}`` and ``${VAR:-default}`` expand from the
environment the settings were read from (``TIERLINE_DATA`` defaults to ``../shared/data``
beside the project, see ``tierline.config.settings``); relative
paths are relative to the job file; ``{date}`` and ``{job}`` in ``out`` are filled in when
the job runs. Every error names the file and the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tierline.router.errors import InvalidInput
from tierline.router.learned.labels import LabelSet, check_instructions
from tierline.router.policy import LANES
from tierline.router.untrusted import check, loads

if TYPE_CHECKING:
    from tierline.config.settings import Settings
KEYS = ("name", "input", "format", "text_column", "id_column", "gold_column", "labels",
        "instructions", "lane", "tenant", "out", "errors", "limit", "schedule",
        "max_output_tokens", "timeout_s")
FORMATS = ("csv", "jsonl")
MAX_NUMBER = 1e12  # rows, tokens or seconds: anything larger is a typo
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class JobSpec:
    """A validated classification job. Paths are absolute; ``out`` may hold ``{date}``."""

    name: str
    input: Path
    format: str
    labels: LabelSet
    out: Path
    text_column: str = "text"
    id_column: str | None = None
    gold_column: str | None = None
    instructions: str | None = None
    lane: str = "batch"
    tenant: str = "default"
    errors: Path | None = None  # default: OUT.errors.jsonl
    limit: int | None = None
    schedule: str | None = None
    max_output_tokens: int | None = None  # default: enough for the longest label
    timeout_s: float | None = None  # default: the lane's latency budget
    source: str = "command line"

    def out_path(self, now_s: float) -> Path:
        """``out`` with ``{date}`` (UTC day of ``now_s``) and ``{job}`` filled in."""
        day = datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%d")
        return Path(str(self.out).replace("{date}", day).replace("{job}", self.name))

    def errors_path(self, out: Path) -> Path:
        """Where rejected rows go: ``errors`` or ``OUT.errors.jsonl``."""
        return self.errors or out.with_name(out.name + ".errors.jsonl")

    def output_tokens(self) -> int:
        """The output cap per row: the job's, else the longest label's tokens plus room."""
        if self.max_output_tokens:
            return self.max_output_tokens
        return max(len(label) for label in self.labels) // 2 + 16


def _fail(source: str, key: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{source}: {key}: {reason}")


def expand(value: str, source: str, key: str, settings: Settings) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from the environment the settings were read from;
    ``${TIERLINE_DATA}`` defaults to the settings' shared data folder."""

    def one(found: re.Match[str]) -> str:
        name, default = found["name"], found["default"]
        if settings.env.get(name):
            return settings.env[name]
        if default is not None:
            return default
        if name == "TIERLINE_DATA":
            return str(settings.data_path)
        raise _fail(source, key, f"${{{name}}} is not set (give ${{{name}:-default}})")

    return _VAR.sub(one, value)


def _path(raw: Any, source: str, key: str, base: Path, settings: Settings) -> Path:
    if not isinstance(raw, str | Path) or not str(raw).strip():
        raise _fail(source, key, "must be a path")
    path = Path(expand(str(raw), source, key, settings)).expanduser()
    return path if path.is_absolute() else (base / path)


def read_labels(raw: Any, source: str, key: str, base: Path, settings: Settings
                ) -> LabelSet:
    """Labels from a list, a comma-separated string, or a file (JSON list/object, lines)."""
    if isinstance(raw, list | tuple):
        if not all(isinstance(x, str) for x in raw):
            raise _fail(source, key, "every label must be a string")
        return LabelSet(raw, f"{source}: {key}")
    if not isinstance(raw, str) or not raw.strip():
        raise _fail(source, key, "give a list, a comma-separated string or a file")
    path = _path(raw, source, key, base, settings)
    if not path.is_file():
        if "," in raw:
            return LabelSet([x.strip() for x in raw.split(",")], f"{source}: {key}")
        raise _fail(source, key, f"no such file {path} (give a file, a list, or a "
                                 "comma-separated string)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(source, key, f"cannot read {path}: {exc}") from exc
    if path.suffix == ".json":
        try:
            data = loads(text)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: {exc}") from None
        if isinstance(data, dict):
            data = list(data)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise InvalidInput(f"{path}: need a JSON list of strings or an object keyed by label")
        return LabelSet(data, str(path))
    return LabelSet([line.strip() for line in text.splitlines() if line.strip()], str(path))


def cron_fields(expr: str) -> tuple[str, str, str, str, str]:
    """The five fields of a cron string (minute hour day-of-month month day-of-week), checked."""
    from celery.schedules import crontab

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"need 5 fields (minute hour day-of-month month day-of-week), got "
                         f"{len(fields)} in {expr!r}")
    minute, hour, day, month, weekday = fields
    try:
        crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month,
                day_of_week=weekday)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{expr!r}: {exc}") from exc
    return minute, hour, day, month, weekday


def job_from_dict(data: Mapping[str, Any], source: str, base: Path, settings: Settings
                  ) -> JobSpec:
    """Validate a job from parsed YAML or flags; relative paths are relative to ``base``,
    ``${VAR}`` expands as :func:`expand` says."""
    unknown = sorted((k for k in data if k not in KEYS), key=str)  # YAML keys may be any type
    if unknown:
        raise _fail(source, str(unknown[0])[:60], f"unknown key (known: {', '.join(KEYS)})")
    for key, value in data.items():  # NaN, NUL, a lone surrogate: refused before any use
        if not isinstance(value, Path):
            try:
                check(value)
            except InvalidInput as exc:
                raise _fail(source, key, str(exc).removeprefix("$: ")) from None
    for key in ("input", "labels", "out"):
        if data.get(key) in (None, ""):
            raise _fail(source, key, "missing")
    input_path = _path(data["input"], source, "input", base, settings)
    if not input_path.is_file():
        raise _fail(source, "input", f"no such file {input_path}")
    fmt = data.get("format") or input_path.suffix.lstrip(".").lower()
    if fmt == "json":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise _fail(source, "format", f"cannot tell CSV from JSONL by {input_path.name!r}; "
                                      f"set format to one of {', '.join(FORMATS)}")
    out = _path(data["out"], source, "out", base, settings)
    if out.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise _fail(source, "out", f"{out.name!r}: the extension picks the format: .jsonl or .csv")
    strings = {}
    for key in ("name", "text_column", "id_column", "gold_column", "instructions", "tenant",
                "schedule"):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _fail(source, key, "must be a non-empty string")
        strings[key] = value
    if strings["instructions"]:
        check_instructions(strings["instructions"], f"{source}: instructions")
    lane = data.get("lane") or "batch"
    if lane not in LANES:
        raise _fail(source, "lane", f"unknown lane {lane!r}; use one of {', '.join(LANES)}")
    numbers: dict[str, Any] = {}
    for key, kind in (("limit", int), ("max_output_tokens", int), ("timeout_s", float)):
        value = data.get(key)
        if value is None:
            numbers[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 < value <= MAX_NUMBER) or (kind is int and value != int(value)):
            raise _fail(source, key, f"must be a positive {'whole ' if kind is int else ''}"
                                     f"number up to {MAX_NUMBER:g}, got {str(value)[:40]}")
        numbers[key] = kind(value)
    if strings["schedule"]:
        try:
            cron_fields(strings["schedule"])
        except ValueError as exc:
            raise _fail(source, "schedule", str(exc)) from exc
    strings["text_column"] = strings["text_column"] or "text"
    columns = [strings[k] for k in ("text_column", "id_column", "gold_column") if strings[k]]
    if len(set(columns)) != len(columns):
        raise _fail(source, "text_column", f"text, id and gold columns must differ: {columns}")
    return JobSpec(
        name=strings["name"] or input_path.stem,
        input=input_path, format=fmt, out=out,
        labels=read_labels(data["labels"], source, "labels", base, settings),
        text_column=str(strings["text_column"]), id_column=strings["id_column"],
        gold_column=strings["gold_column"], instructions=strings["instructions"],
        lane=lane, tenant=strings["tenant"] or "default",
        errors=(_path(data["errors"], source, "errors", base, settings) if data.get("errors")
                else None),
        schedule=strings["schedule"], source=source, **numbers)


def load_job(path: Path, overrides: Mapping[str, Any] | None = None, *,
             settings: Settings | None = None) -> JobSpec:
    """Read a job file; ``overrides`` (flags, paths already absolute) win over its keys;
    ``${VAR}`` expands from ``settings`` (default: the process's)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8: {exc.reason} at byte {exc.start}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: <yaml>: {str(exc).replace(chr(10), ' ')}") from exc
    except RecursionError:  # the YAML composer recurses once per level of nesting
        raise InvalidInput(f"{path}: <yaml>: nested too deeply to read") from None
    except ValueError:  # the YAML constructor's int() past 4,300 digits
        raise InvalidInput(f"{path}: <yaml>: a number too long to read") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: <root>: a job file is a mapping of keys to values")
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if settings is None:
        from tierline.config.settings import settings_in_force

        settings = settings_in_force()
    return job_from_dict(data, str(path), path.resolve().parent, settings)


def with_limit(spec: JobSpec, limit: int | None) -> JobSpec:
    """The same job on its first ``limit`` rows."""
    return replace(spec, limit=limit) if limit else spec
