"""The SQL index: artifacts (the action cache), their uses, aliases, and the file stat cache.

The schema lives in alembic migrations (``migrations/versions``); the tables below mirror the
head revision for queries. Opening an index that is already at ``HEAD_REVISION`` costs one
``SELECT`` and never imports alembic, which keeps a CLI cache hit fast.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# Re-exported: defined in schema_version so the sqlite3 fast path can read it without SQLAlchemy.
from artifact_store.schema_version import HEAD_REVISION as HEAD_REVISION

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores naive UTC (portable across SQLite and PostgreSQL); returns aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the index; use UTC-aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata_obj = sa.MetaData()

artifacts = sa.Table(
    "artifacts",
    metadata_obj,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("manifest_digest", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("target", sa.String(255), nullable=False, index=True),
    sa.Column("backend", sa.String(255), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("metadata", sa.JSON(), nullable=False),
    # "ok" or "corrupt" (issue 6 #8): a corrupt artifact is never a hit; a rebuild resets it.
    sa.Column("state", sa.String(16), nullable=False, server_default="ok"),
    sa.Column("problem", sa.Text(), nullable=True),
)

aliases = sa.Table(
    "aliases",
    metadata_obj,
    sa.Column("alias", sa.String(255), primary_key=True),
    sa.Column(
        "key",
        sa.String(255),
        sa.ForeignKey("artifacts.key", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Every (model, target) an artifact serves. artifacts.model/target name only the build that
# made it; a build for another target that finds it as a cache hit adds a use here, so that
# Store.list(target=...) finds it too.
artifact_uses = sa.Table(
    "artifact_uses",
    metadata_obj,
    sa.Column(
        "key",
        sa.String(255),
        sa.ForeignKey("artifacts.key", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("first_used_at", UTCDateTime(), nullable=False),
    sa.Index("ix_artifact_uses_model_target", "model", "target"),
)

file_hashes = sa.Table(
    "file_hashes",
    metadata_obj,
    sa.Column("path", sa.Text(), primary_key=True),
    sa.Column("inode", sa.BigInteger(), nullable=False),
    sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("hash_version", sa.Integer(), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
)


# What each blob looked like when it became part of an artifact (issue 6 #8). Blobs are
# read-only and never rewritten in place, so a different inode, mtime or size means tampering
# or a bad disk: the cheap check on every hit compares these, and re-hashes only on a mismatch.
blob_stats = sa.Table(
    "blob_stats",
    metadata_obj,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("inode", sa.BigInteger(), nullable=False),
    sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
)


def create_readonly_engine(path: str) -> Engine:
    """An engine over read-only sqlite3 connections to the file at ``path`` (issue 6 #13).

    No PRAGMA that writes, no migration: ``ls``/``show``/``verify`` keep working on a full disk.
    """
    from artifact_store.reader import connect_ro

    return sa.create_engine("sqlite://", creator=lambda: connect_ro(path))


def create_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a 30 s busy timeout and foreign keys."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that "begin" below decides.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA foreign_keys = ON")
        # WAL: readers never block on a writer, so a cache hit is not slowed by a build.
        cur.execute("PRAGMA journal_mode = WAL")
        # NORMAL is crash-safe under WAL; at worst a power cut loses the last commits, and a
        # lost row only means a rebuild (blobs are fsynced independently).
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that later upgrades to a writer can get SQLITE_BUSY at once,
        # bypassing busy_timeout; writers therefore take the write lock up front.
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def write_connection(engine: Engine) -> Connection:
    """A connection whose transactions take the SQLite write lock at BEGIN."""
    return engine.connect().execution_options(sqlite_immediate=True)


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in ``alembic_version``, or None for a fresh database."""
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    except sa.exc.DBAPIError:
        return None  # table missing: nothing has been migrated yet
    return row[0] if row else None


def ensure_schema(engine: Engine, lock_path: Path) -> None:
    """Upgrade the database to ``HEAD_REVISION`` unless it is already there.

    Migrations run under a file lock so two processes opening a fresh store at once do not
    both try to create the tables; the loser re-checks and finds the work done.
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    from filelock import FileLock

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        if current_revision(engine) == HEAD_REVISION:
            return
        run_migrations(engine)


def alembic_config(connection: Connection | None = None):  # -> alembic.config.Config
    """An alembic Config built in code (no alembic.ini), pointing at the shipped scripts."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", os.fspath(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def run_migrations(engine: Engine, revision: str = "head") -> None:
    """Run ``alembic upgrade`` to ``revision`` on ``engine``."""
    from alembic import command

    with write_connection(engine) as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()
