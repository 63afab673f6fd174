"""The Alembic migrations build exactly the tables ``workers/schema.py`` describes, on the
embedded mode's SQLite and on Postgres, and the latest one goes down and up again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

import migrations
from workers.db import engine_for, upgrade
from workers.schema import metadata


def _differences(url: str) -> list[Any]:
    with engine_for(url).connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_the_migrations_build_the_tables_the_code_describes(database_url: str) -> None:
    upgrade(database_url)
    assert _differences(database_url) == []


def _down_to(database_url: str, revision: str) -> None:
    """Migrate to head, then back down to ``revision``."""
    upgrade(database_url)
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["engine"] = engine_for(database_url)
    command.downgrade(config, revision)


def test_the_kept_answers_migration_goes_down_and_up_again(database_url: str) -> None:
    _down_to(database_url, "0004")
    missing = {(d[0], d[3].name) for d in _differences(database_url) if d[0] == "add_column"}
    assert missing == {("add_column", "content"), ("add_column", "finish_reason")}
    upgrade(database_url)
    assert _differences(database_url) == []


def test_the_files_and_batches_migration_goes_down_and_up_again(database_url: str) -> None:
    _down_to(database_url, "0005")
    missing = {(d[0], d[1].name) for d in _differences(database_url)}
    assert missing == {("add_table", "files"), ("add_index", "ix_files_tenant_purpose_created_at"),
                       ("add_table", "batches"), ("add_index", "ix_batches_tenant_created_at"),
                       ("add_table", "reports"),  # 0008, above 0006
                       ("add_index", "ix_attempts_started_at"), ("add_table", "bundles")}  # 0011
    upgrade(database_url)
    assert _differences(database_url) == []


def test_the_batch_intake_migration_goes_down_and_up_again(database_url: str) -> None:
    _down_to(database_url, "0006")
    missing = {(d[0], d[3].name) for d in _differences(database_url) if d[0] == "add_column"}
    assert missing == {("add_column", "enqueued_at"), ("add_column", "in_progress_at")}
    upgrade(database_url)
    assert _differences(database_url) == []


def test_the_reports_migration_goes_down_and_up_again(database_url: str) -> None:
    _down_to(database_url, "0007")
    missing = {(d[0], d[1].name) for d in _differences(database_url)}
    assert missing == {("add_table", "reports"), ("add_index", "ix_attempts_started_at"),
                       ("add_table", "bundles")}
    upgrade(database_url)
    assert _differences(database_url) == []


def test_the_started_at_index_migration_goes_down_and_up_again(database_url: str) -> None:
    _down_to(database_url, "0008")
    missing = {(d[0], d[1].name) for d in _differences(database_url)}
    assert missing == {("add_index", "ix_attempts_started_at"), ("add_table", "bundles")}
    upgrade(database_url)
    assert _differences(database_url) == []
