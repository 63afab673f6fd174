"""Alembic environment: runs migrations on the engine tierline passes, or on the configured URL."""

from __future__ import annotations

from alembic import context

from tierline.config.settings import settings_in_force
from tierline.record.db import engine_for
from tierline.record.schema import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    return (
        config.get_main_option("sqlalchemy.url")
        or settings_in_force().database_url  # $TIERLINE_DATABASE_URL, else the data directory's
    )


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or engine_for(_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
