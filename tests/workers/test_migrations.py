"""The Alembic migrations build exactly the tables ``tierline/record/schema.py`` describes, on the
embedded mode's SQLite and on Postgres, and the latest one goes down and up again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from tierline.record import migrations
from tierline.record.db import engine_for, upgrade
from tierline.record.schema import metadata


def _differences(url: str) -> list[Any]:
    with engine_for(url).connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_the_migrations_build_the_tables_the_code_describes(database_url: str) -> None:
    upgrade(database_url)
    assert _differences(database_url) == []


# What each revision adds, as (kind, name): a test goes down below one revision and finds
# missing exactly what it and every later revision add.
ADDS: dict[str, set[tuple[str, str]]] = {
    "0005": {("add_column", "attempts.content"), ("add_column", "attempts.finish_reason")},
    "0006": {("add_table", "files"), ("add_index", "ix_files_tenant_purpose_created_at"),
             ("add_table", "batches"), ("add_index", "ix_batches_tenant_created_at")},
    "0007": {("add_column", "batches.enqueued_at"), ("add_column", "batches.in_progress_at")},
    "0008": {("add_table", "reports")},
    "0009": {("add_column", "requests.not_before"), ("add_column", "requests.touched_at"),
             ("add_index", "ix_requests_unfinished"), ("add_table", "pending_attempts")},
    "0010": {("add_table", "api_keys")},
    "0011": {("add_index", "ix_attempts_started_at"), ("add_table", "bundles")},
    "0012": {("add_column", "attempts.shadow"), ("add_column", "charges.shadow"),
             ("add_table", "shadow_outcomes"), ("add_index", "ix_shadow_outcomes_request_id"),
             ("add_index", "ix_shadow_outcomes_day")},
    "0015": {("add_column", "pending_attempts.shadow")},
    "0016": {("add_table", "tenant_limits")},
}


def _named(differences: list[Any]) -> set[tuple[str, str]]:
    """Each difference as (kind, name): a column as table.column, a table or index by name."""
    return {(d[0], f"{d[2]}.{d[3].name}" if d[0] == "add_column" else d[1].name)
            for d in differences}


def _down_to(database_url: str, revision: str) -> None:
    """Migrate to head, then back down to ``revision``."""
    upgrade(database_url)
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["engine"] = engine_for(database_url)
    command.downgrade(config, revision)


def _revisions() -> list[str]:
    versions = Path(migrations.__file__).parent / "versions"
    return sorted(path.name[:4] for path in versions.glob("0*.py"))


def test_every_revision_is_described_here() -> None:
    assert [n for n in _revisions() if n >= "0005"] == sorted(ADDS)


@pytest.mark.parametrize("revision", sorted(ADDS))
def test_each_migration_goes_down_and_up_again(database_url: str, revision: str) -> None:
    revisions = _revisions()
    below = revisions[revisions.index(revision) - 1]
    _down_to(database_url, below)
    expected = set().union(*(adds for number, adds in ADDS.items() if number >= revision))
    tables = {name for kind, name in expected if kind == "add_table"}
    # a column added to a table that is itself missing is not missing on its own
    expected = {(kind, name) for kind, name in expected
                if kind != "add_column" or name.split(".")[0] not in tables}
    assert _named(_differences(database_url)) == expected
    upgrade(database_url)
    assert _differences(database_url) == []
