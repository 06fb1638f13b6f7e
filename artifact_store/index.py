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
    # "ok" or "corrupt": a corrupt artifact is never a hit; a rebuild resets it.
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


# What each blob looked like when it became part of an artifact, as an older version recorded
# it. Inodes are a fact of one disk, not of an index other stores may share: the cheap check now
# keeps them in the store (artifact_store/local.py), which reads these rows once, where the index
# is the store's own file.
blob_stats = sa.Table(
    "blob_stats",
    metadata_obj,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("inode", sa.BigInteger(), nullable=False),
    sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
)


# Failed builds as data: the last failure of each key, shown by `ls --failed`. Never
# a hit (an artifact exists only as an ``artifacts`` row); a later success of the key deletes
# it; ``compile --no-retry-failed`` skips a key whose failure has the same toolchain identity.
build_failures = sa.Table(
    "build_failures",
    metadata_obj,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("backend", sa.String(255), nullable=False),
    sa.Column("profile", sa.String(255), nullable=False),
    # A digest of what ran (tool and toolchain): the same key failing again with it is no news.
    sa.Column("toolchain", sa.String(64), nullable=False),
    sa.Column("exit_code", sa.Integer(), nullable=True),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("log_path", sa.Text(), nullable=True),
    sa.Column("log_digest", sa.String(64), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("failed_at", UTCDateTime(), nullable=False, index=True),
)

# Every blob an artifact keeps alive (manifest, its files, metadata blobs), written by commit
# Gc's snapshot is one query instead of re-reading every manifest. An artifact
# without rows (committed before 0004) is read from its manifest, as before.
artifact_blobs = sa.Table(
    "artifact_blobs",
    metadata_obj,
    sa.Column(
        "key",
        sa.String(255),
        sa.ForeignKey("artifacts.key", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
)


# Action results (Bazel's action cache without the bytes): each key's output manifest digest and
# the keys it was built from. A downstream key needs only its upstream's manifest digest, so a
# store that holds a final artifact resolves its chain's keys from these rows without its
# upstream stages' files (pulled with the artifact, or evicted since). Written when a stage is
# built or pulled; kept when the artifact row is evicted. No foreign key: a result outlives its
# artifact on purpose.
action_results = sa.Table(
    "action_results",
    metadata_obj,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("manifest_digest", sa.String(64), nullable=False),
    sa.Column("parents", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)


def insert_ignoring(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """INSERT ``rows``, skipping those whose primary key exists; how many were inserted.

    ``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite (a select-then-insert
    raced on PostgreSQL, where writers are not serialized, and raised IntegrityError). A
    concurrent inserter of the same key is waited for, never failed.
    """
    if not rows:
        return 0
    stmt = _dialect_insert(conn, table)
    if stmt is None:  # another dialect: the portable form (its race is retried by callers)
        pk = [c.name for c in table.primary_key.columns]
        added = 0
        for row in rows:
            where = [table.c[c] == row[c] for c in pk]
            if conn.execute(sa.select(*table.primary_key.columns).where(*where)).first() is None:
                conn.execute(table.insert().values(**row))
                added += 1
        return added
    pk = [c.name for c in table.primary_key.columns]
    added = 0
    for chunk in _chunks(rows):
        stmt = _dialect_insert(conn, table).values(chunk).on_conflict_do_nothing(index_elements=pk)
        if conn.dialect.name == "postgresql":
            # psycopg reports no rowcount for it: count the rows RETURNING gives back.
            added += len(conn.execute(stmt.returning(table.c[pk[0]])).all())
        else:
            added += max(conn.execute(stmt).rowcount, 0)
    return added


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    update: dict[str, Any] | None = None,
) -> None:
    """INSERT ``rows``, or update the existing row of the same primary key.

    ``update`` maps columns to values (or SQL expressions over ``excluded``'s columns, see
    :func:`excluded`); by default every non-key column takes the new row's value.
    """
    if not rows:
        return
    pk = [c.name for c in table.primary_key.columns]
    stmt = _dialect_insert(conn, table)
    if stmt is None:
        for row in rows:
            conn.execute(table.delete().where(*[table.c[c] == row[c] for c in pk]))
            conn.execute(table.insert().values(**row))
        return
    for chunk in _chunks(rows):
        stmt = _dialect_insert(conn, table).values(chunk)
        cols = (
            {c: stmt.excluded[c] for c in chunk[0] if c not in pk}
            if update is None
            else {c: (v(stmt.excluded) if callable(v) else v) for c, v in update.items()}
        )
        conn.execute(stmt.on_conflict_do_update(index_elements=pk, set_=cols))


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    # Stay below SQLite's bound-parameter limit (999 on old builds) in a multi-row VALUES.
    step = max(1, 900 // max(1, len(rows[0])))
    return [rows[i : i + step] for i in range(0, len(rows), step)]


def _dialect_insert(conn: Connection, table: sa.Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)
    return None


def retryable(exc: BaseException) -> bool:
    """A write that lost a race (a unique or foreign key, a deadlock, a serialization failure):
    running the transaction again sees the winner's work."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")


def create_readonly_engine(path: str) -> Engine:
    """An engine over read-only sqlite3 connections to the file at ``path``.

    No PRAGMA that writes, no migration: ``ls``/``show``/``verify`` keep working on a full disk.
    """
    from artifact_store.reader import connect_ro

    return sa.create_engine("sqlite://", creator=lambda: connect_ro(path))


def create_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a 30 s busy timeout and foreign keys."""
    if not url.startswith("sqlite"):
        engine = sa.create_engine(url, pool_pre_ping=True)
        event.listen(engine, "handle_error", _unreachable_as(url))
        return engine
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


def _unreachable_as(url: str) -> Any:
    """A ``handle_error`` listener: a lost or refused server connection raises
    :class:`~artifact_store.errors.IndexUnreachable` (the index is unavailable, exit 8 for
    rmbuild) instead of the driver's OperationalError, which callers cannot tell from a bug.
    """
    from artifact_store.errors import IndexUnreachable
    from artifact_store.names import safe_url

    def listener(ctx: Any) -> None:
        if ctx.is_pre_ping:
            return  # the pool reconnects after a failed ping; a failed reconnect comes here
        exc = ctx.original_exception
        # No connection yet means connecting failed (refused, reset, the server starting up).
        lost = ctx.is_disconnect or (
            ctx.connection is None and isinstance(ctx.sqlalchemy_exception, sa.exc.OperationalError)
        )
        if lost:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise IndexUnreachable(f"the index {safe_url(url)} does not answer: {first}") from exc

    return listener


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


# pg_advisory_lock key of the migration lock: any constant; "rmbuild" in ASCII.
MIGRATE_LOCK_ID = 0x726D6275696C64


def ensure_schema(engine: Engine, lock_path: Path) -> None:
    """Upgrade the database to ``HEAD_REVISION`` unless it is already there.

    Migrations run under a lock so two processes opening a fresh index at once do not both
    try to create the tables; the loser re-checks and finds the work done. The lock lives
    where the index does: a PostgreSQL advisory lock, shared by every host that
    opens the database (a local file lock let 3 of 8 concurrent first-opens fail); a file
    lock next to a SQLite file.
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            # Session-level: held across alembic's own transaction, released on close even
            # if this process dies.
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATE_LOCK_ID})")
            conn.commit()
            try:
                if current_revision(engine) != HEAD_REVISION:
                    run_migrations(engine)
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATE_LOCK_ID})")
                conn.commit()
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
