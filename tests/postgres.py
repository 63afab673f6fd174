"""The session's template database: migrated to head once, by ``tierline db upgrade`` as a
user would, then copied for every fresh test database (``CREATE DATABASE ... TEMPLATE``:
~0.04 s, where running the migrations takes ~1 s).

Its own module, so that the conftest pytest loads and the ``tests.conftest`` that test files
import share one template."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_MADE: list[str] = []  # the template's name, once made


def _url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def migrated_template(admin_url: str) -> str:
    """The template's name, made on first use; nothing ever connects to it afterwards (a
    template with a session open cannot be copied)."""
    if not _MADE:
        import psycopg

        name = f"tierline_template_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _MADE.append(name)
        subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], check=True,
                       cwd=ROOT, env={**os.environ, "TIERLINE_DATABASE_URL": _url(admin_url, name)},
                       capture_output=True)
    return _MADE[0]


def drop_template(admin_url: str) -> None:
    """Drop the template, if this session made one."""
    if _MADE:
        import psycopg

        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_MADE.pop()}" WITH (FORCE)')
