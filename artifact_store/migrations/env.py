"""Alembic environment: runs on the connection that ``index.run_migrations`` passes in."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

config = context.config


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Used from the alembic CLI with -x url=... or a sqlalchemy.url option.
        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
            "sqlalchemy.url"
        )
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            _configure_and_run(conn)
        return
    _configure_and_run(connection)


def _configure_and_run(connection: sa.Connection) -> None:
    # Batch mode lets later migrations ALTER tables on SQLite (copy-and-move under the hood).
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
