"""Fixtures shared by the tier-worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tierline.record.db import engine_for


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The embedded mode's SQLite file, then a fresh Postgres database (migrated to head)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'worker.sqlite'}"
        return
    url: str = request.getfixturevalue("own_postgres_url")
    yield url
    engine_for(url).dispose()  # before the database is dropped
