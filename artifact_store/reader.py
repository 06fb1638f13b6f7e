"""The stdlib-sqlite3 read path: a cache hit's reads without importing SQLAlchemy.

SQLAlchemy costs ~0.2 s to import, most of a CLI cache hit. So for a plain ``sqlite:///`` file
index already at the head revision, the hit's reads (:meth:`Store.get`, the stat-cache lookup)
use a read-only sqlite3 connection (the integrity check's records are the store's own, read
through sqlite3 too: :mod:`artifact_store.local`). These
functions mirror index.py's tables and UTCDateTime/JSON column types, and must return exactly
what the SQLAlchemy path returns; tests/artifact_store/test_fast_path.py compares the two.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from artifact_store.records import ArtifactRecord
from artifact_store.schema_version import HEAD_REVISION

ARTIFACT_COLUMNS = (
    "key",
    "manifest_digest",
    "model",
    "target",
    "backend",
    "created_at",
    "last_used_at",
    "size",
    "metadata",
    "state",
    "problem",
)
# Stay below SQLite's bound-parameter limit (32766 on current builds, 999 on old ones).
_CHUNK = 900


def sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///<path>`` URL, or None for anything else.

    No driver, query string or %-escapes (which SQLAlchemy would interpret), no memory db.
    """
    prefix = "sqlite:///"
    path = url[len(prefix) :] if url.startswith(prefix) else ""
    if not path or path == ":memory:" or any(c in path for c in "?%#"):
        return None
    return path


def connect_ro(path: str) -> sqlite3.Connection:
    """A read-only sqlite3 connection to the database file at ``path``.

    mode=ro: it never writes (and cannot create the file); under WAL it still maps the -shm
    index, so it reads concurrently with writers. On a full disk the -shm file
    may be impossible to create; when there is also no -wal file, the database file alone is
    the whole truth, and it is opened ``immutable`` (no -shm needed). check_same_thread=False:
    the engine it stands in for was usable from any thread.
    """
    uri = Path(path).absolute().as_uri()
    conn = _connect(uri + "?mode=ro")
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        conn.close()
        if os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0:
            raise
        conn = _connect(uri + "?mode=ro&immutable=1")
    return conn


def _connect(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    # Same 30 s wait as the engine's connections (index.create_engine) when locked.
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def open_reader(url: str) -> sqlite3.Connection | None:
    """A read-only sqlite3 connection to the index at ``url``, if the fast path applies.

    Only for a plain sqlite file URL whose file exists and is stamped with HEAD_REVISION.
    Anything else (fresh or old database, other dialects) returns None and goes through
    SQLAlchemy, which creates or migrates the schema.
    """
    path = sqlite_path(url)
    if path is None or not os.path.isfile(path):
        return None
    try:
        conn = connect_ro(path)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no alembic_version yet, or not a database: SQLAlchemy decides
        row = None
    if row is None or row[0] != HEAD_REVISION:
        conn.close()
        return None
    return conn


def get_fast(conn: sqlite3.Connection, key: str) -> ArtifactRecord | None:
    """:meth:`Store.get` through sqlite3; the same record the SQLAlchemy path builds."""
    cols = ", ".join(f"a.{c}" for c in ARTIFACT_COLUMNS)
    # One statement (so one snapshot, like the engine's transaction; an explicit BEGIN would
    # clash on this connection shared between threads): a row per alias and per use, tagged
    # by kind, or a single row of NULLs after the artifact's columns if it has neither.
    rows = conn.execute(
        f"SELECT {cols}, x.kind, x.v1, x.v2 FROM artifacts AS a LEFT JOIN ("
        " SELECT 'alias' AS kind, alias AS v1, NULL AS v2 FROM aliases WHERE key = :key"
        " UNION ALL SELECT 'use', model, target FROM artifact_uses WHERE key = :key"
        ") AS x ON 1 WHERE a.key = :key",
        {"key": key},
    ).fetchall()
    if not rows:
        return None
    r = dict(zip(ARTIFACT_COLUMNS, rows[0], strict=False))
    n = len(ARTIFACT_COLUMNS)
    return ArtifactRecord(
        key=r["key"],
        manifest_digest=r["manifest_digest"],
        model=r["model"],
        target=r["target"],
        backend=r["backend"],
        created_at=utc_from_sqlite(r["created_at"]),
        last_used_at=utc_from_sqlite(r["last_used_at"]),
        size=r["size"],
        # sa.JSON stores json.dumps text in SQLite and decodes it with json.loads.
        metadata=json.loads(r["metadata"]),
        # Sorted in Python as _select's aliases are by ORDER BY: aliases are ASCII, so the two
        # orders agree (and uses are sorted in Python on both paths).
        aliases=tuple(sorted(row[n + 1] for row in rows if row[n] == "alias")),
        uses=tuple(sorted((row[n + 1], row[n + 2]) for row in rows if row[n] == "use")),
        state=r["state"],
        problem=r["problem"],
    )


def _filters(model: str | None, target: str | None, backend: str | None) -> tuple[str, list]:
    """The WHERE clause of :meth:`Store.list`'s filters (uses for model/target, as there)."""
    conds, params = [], []
    if backend is not None:
        conds.append("a.backend = ?")
        params.append(backend)
    use = [(c, v) for c, v in (("model", model), ("target", target)) if v is not None]
    if use:
        inner = " AND ".join(f"{c} = ?" for c, _ in use)
        conds.append(f"a.key IN (SELECT key FROM artifact_uses WHERE {inner})")
        params += [v for _, v in use]
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


# The metadata keys a listing shows (``ls``): Store.list(summary=True) returns only these.
SUMMARY_KEYS = ("profile", "stage", "tool", "toolchain")


def summary_metadata(values: list | None) -> dict:
    """The summary metadata from the database's array of :data:`SUMMARY_KEYS` values."""
    return {k: v for k, v in zip(SUMMARY_KEYS, values or (), strict=False) if v is not None}


def list_fast(
    conn: sqlite3.Connection,
    *,
    model: str | None = None,
    target: str | None = None,
    backend: str | None = None,
    limit: int | None = None,
    summary: bool = False,
) -> list[ArtifactRecord]:
    """:meth:`Store.list` through sqlite3 (``ls`` with 100,000 artifacts).

    Newest first (``created_at`` desc, then key), filtered and capped in SQL; the same records
    the SQLAlchemy path builds (tests/artifact_store/test_listing.py compares them).
    """
    where, params = _filters(model, target, backend)
    cols = ", ".join(f"a.{c}" for c in ARTIFACT_COLUMNS)
    if summary:  # the shown keys, picked by SQLite: one small array to decode, not the whole
        paths = ", ".join(f"'$.{k}'" for k in SUMMARY_KEYS)
        cols = cols.replace("a.metadata", f"json_extract(a.metadata, {paths})")
    sql = f"SELECT {cols} FROM artifacts AS a{where} ORDER BY a.created_at DESC, a.key"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    rows = conn.execute(sql, params).fetchall()
    if not rows:
        return []
    keys = [r[0] for r in rows]
    names: dict[str, list[str]] = {}
    uses: dict[str, list[tuple[str, str]]] = {}
    if len(keys) <= _CHUNK:
        marks = ", ".join("?" * len(keys))
        alias_rows = conn.execute(f"SELECT alias, key FROM aliases WHERE key IN ({marks})", keys)
        use_rows = conn.execute(
            f"SELECT model, target, key FROM artifact_uses WHERE key IN ({marks})", keys
        ).fetchall()
    else:  # most of the table: one scan each beats thousands of IN lists
        alias_rows = conn.execute("SELECT alias, key FROM aliases")
        use_rows = conn.execute("SELECT model, target, key FROM artifact_uses").fetchall()
    for alias, key in alias_rows:
        names.setdefault(key, []).append(alias)
    for m, t, key in use_rows:
        uses.setdefault(key, []).append((m, t))
    return [record_of(r, names, uses, summary=summary) for r in rows]


def count_fast(
    conn: sqlite3.Connection,
    *,
    model: str | None = None,
    target: str | None = None,
    backend: str | None = None,
) -> int:
    """How many artifacts :func:`list_fast` would list without a limit."""
    where, params = _filters(model, target, backend)
    return conn.execute(f"SELECT count(*) FROM artifacts AS a{where}", params).fetchone()[0]


def prefix_upper(prefix: str) -> str:
    """The exclusive upper bound of keys starting with ``prefix`` (lowercase hex): every such
    key sorts below ``prefix + "g"``, every other key at or above ``prefix`` above it. A range
    on the primary key index is O(log n) where ``LIKE`` scanned."""
    return prefix + "g"


def keys_with_prefix_fast(conn: sqlite3.Connection, prefix: str, limit: int) -> list[str]:
    """Keys starting with ``prefix`` (lowercase hex), in key order, at most ``limit``."""
    rows = conn.execute(
        "SELECT key FROM artifacts WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
        (prefix, prefix_upper(prefix), limit),
    )
    return [r[0] for r in rows]


def alias_key_fast(conn: sqlite3.Connection, alias: str) -> str | None:
    """The key ``alias`` points at, or None."""
    row = conn.execute("SELECT key FROM aliases WHERE alias = ?", (alias,)).fetchone()
    return row[0] if row else None


# (key, manifest_digest, created_at, last_used_at) of an artifact, as gc needs it.
GcRow = tuple[str, str, datetime, datetime]


def gc_index_fast(
    conn: sqlite3.Connection, only: list[str] | None = None
) -> tuple[list[GcRow], dict[str, list[tuple[str, int]]]]:
    """:meth:`Store.gc_index` through sqlite3."""
    when = utc_from_sqlite
    queries = [("", [])] if only is None else []
    for i in range(0, len(only or ()), _CHUNK):
        chunk = (only or [])[i : i + _CHUNK]
        queries.append((f" WHERE key IN ({', '.join('?' * len(chunk))})", chunk))
    rows: list[GcRow] = []
    refs: dict[str, list[tuple[str, int]]] = {}
    for where, params in queries:
        sql = f"SELECT key, manifest_digest, created_at, last_used_at FROM artifacts{where}"
        rows += [(k, m, when(c), when(u)) for k, m, c, u in conn.execute(sql, params)]
        sql = f"SELECT key, digest, size FROM artifact_blobs{where} ORDER BY key"
        for key, digest, size in conn.execute(sql, params):
            got = refs.get(key)
            if got is None:
                refs[key] = got = []
            got.append((digest, size))
    return rows, refs


GC_LIVE_SQL = (
    "SELECT key FROM artifacts",
    "SELECT digest, size FROM artifact_blobs",
    "SELECT key FROM artifacts AS a WHERE NOT EXISTS"
    " (SELECT 1 FROM artifact_blobs AS b WHERE b.key = a.key)",
)


def gc_live_fast(conn: sqlite3.Connection) -> tuple[set[str], dict[str, int], list[str]]:
    """:meth:`Store.gc_live` through sqlite3."""
    keys_sql, blobs_sql, legacy_sql = GC_LIVE_SQL
    keys = {r[0] for r in conn.execute(keys_sql)}
    sizes = dict(conn.execute(blobs_sql).fetchall())
    return keys, sizes, [r[0] for r in conn.execute(legacy_sql)]


def utc_from_sqlite(value: str) -> datetime:
    """Decode a UTCDateTime column as index.UTCDateTime does.

    SQLAlchemy's SQLite DateTime stores naive UTC as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, which
    fromisoformat parses; the result is made aware UTC.
    """
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def record_of(
    r: tuple[object, ...],
    names: dict[str, list[str]],
    uses: dict[str, list[tuple[str, str]]],
    *,
    summary: bool,
) -> ArtifactRecord:
    """One artifact from a row of :data:`ARTIFACT_COLUMNS` (key, manifest, model, target, backend,
    created, last used, size, metadata JSON, state, problem) and its aliases and uses."""
    return ArtifactRecord(
        key=r[0],
        manifest_digest=r[1],
        model=r[2],
        target=r[3],
        backend=r[4],
        created_at=utc_from_sqlite(r[5]),
        last_used_at=utc_from_sqlite(r[6]),
        size=r[7],
        metadata=summary_metadata(json.loads(r[8])) if summary else json.loads(r[8]),
        aliases=tuple(sorted(names.get(r[0], ()))),
        uses=tuple(sorted(uses.get(r[0], ()))),
        state=r[9],
        problem=r[10],
    )
