"""The core in router/ performs no I/O: it imports no Celery, kombu, httpx, SQLAlchemy or Redis."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"celery", "kombu", "httpx", "sqlalchemy", "redis", "psycopg", "requests", "alembic",
             "workers", "tierline", "sim"}
ROUTER = Path(__file__).resolve().parents[2] / "router"


def test_router_imports_nothing_that_does_io() -> None:
    offenders = []
    for path in sorted(ROUTER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders
    assert len(list(ROUTER.rglob("*.py"))) >= 5  # the walk really saw the package
