"""File digests cached by (absolute path, inode, mtime_ns, size, HASH_VERSION).

The same trick as dvc-data's ``state`` table: an unchanged multi-GB model file is hashed
once, then recognised by ``stat()`` alone.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from artifact_store.hashing import HASH_VERSION

# SQLAlchemy (and index.py, which needs it) is imported inside the functions that use it: a
# cache hit looks digests up through a plain sqlite3 connection and must not pay its import.
if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# A file modified within the filesystem's timestamp granularity of being hashed could change
# again without its mtime moving ("racy git"); such young files are hashed but not cached.
RACY_WINDOW_NS = 2_000_000_000
# Stay below SQLite's bound-parameter limit (32766 on current builds, 999 on old ones).
_CHUNK = 900


@dataclass(frozen=True)
class StatKey:
    """What must be unchanged for a cached digest to be trusted."""

    path: str  # absolute
    inode: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> StatKey:
        return cls(path, st.st_ino, st.st_mtime_ns, st.st_size)

    def cacheable(self, now_ns: int | None = None) -> bool:
        now_ns = time.time_ns() if now_ns is None else now_ns
        return self.mtime_ns < now_ns - RACY_WINDOW_NS


def lookup(db: Engine | sqlite3.Connection, keys: Sequence[StatKey]) -> dict[str, str]:
    """Cached digests for ``keys`` whose stat still matches, by absolute path (one query).

    ``db`` is the index's engine, or the store's read-only sqlite3 connection (fast path).
    """
    if not keys:
        return {}
    wanted = {k.path: k for k in keys}
    found: dict[str, str] = {}
    paths = list(wanted)
    for path, inode, mtime_ns, size, digest in _cached_rows(db, paths):
        k = wanted[path]
        if (inode, mtime_ns, size) == (k.inode, k.mtime_ns, k.size):
            found[path] = digest
    return found


def _cached_rows(db: Engine | sqlite3.Connection, paths: list[str]) -> Iterable[tuple]:
    """``(path, inode, mtime_ns, size, digest)`` rows of ``file_hashes`` for ``paths``."""
    if isinstance(db, sqlite3.Connection):
        # Same query as below, written out for sqlite3; HASH_VERSION is read at call time.
        for i in range(0, len(paths), _CHUNK):
            chunk = paths[i : i + _CHUNK]
            yield from db.execute(
                "SELECT path, inode, mtime_ns, size, digest FROM file_hashes"
                f" WHERE path IN ({', '.join('?' * len(chunk))}) AND hash_version = ?",
                (*chunk, HASH_VERSION),
            )
        return
    import sqlalchemy as sa

    from artifact_store import index

    t = index.file_hashes
    with db.connect() as conn:
        for i in range(0, len(paths), _CHUNK):
            yield from conn.execute(
                sa.select(t.c.path, t.c.inode, t.c.mtime_ns, t.c.size, t.c.digest).where(
                    t.c.path.in_(paths[i : i + _CHUNK]), t.c.hash_version == HASH_VERSION
                )
            )


def store(engine: Engine, entries: Iterable[tuple[StatKey, str]]) -> None:
    """Remember digests; a row already cached for a path is replaced by the new one.

    One upsert (``INSERT … ON CONFLICT (path) DO UPDATE``) per chunk, rows in path order:
    concurrent writers of the same paths wait for each other instead of failing on the
    primary key, so the server logs no duplicate-key error and a pipelined psycopg
    connection is never left aborted (which psycopg reports on stderr when it is closed).
    """
    now_ns = time.time_ns()
    rows = {
        k.path: {
            "path": k.path,
            "inode": k.inode,
            "mtime_ns": k.mtime_ns,
            "size": k.size,
            "hash_version": HASH_VERSION,
            "digest": digest,
        }
        for k, digest in entries
        if k.cacheable(now_ns)
    }
    if not rows:
        return
    from artifact_store import index

    ordered = [rows[p] for p in sorted(rows)]  # one lock order for every writer: no deadlock
    with index.write_connection(engine) as conn, conn.begin():
        index.upsert(conn, index.file_hashes, ordered)


def prune(engine: Engine, *, dry_run: bool = False) -> int:
    """Drop rows whose file is gone or changed since it was hashed.

    Such a row can never be a hit again: a changed file is re-hashed and re-cached anyway.
    Returns how many rows were (or with ``dry_run`` would be) dropped.
    """
    import sqlalchemy as sa

    from artifact_store import index

    t = index.file_hashes
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.path, t.c.inode, t.c.mtime_ns, t.c.size)).all()
    stale = []
    for path, inode, mtime_ns, size in rows:
        try:
            st = os.stat(path)
        except OSError:
            stale.append(path)
            continue
        if (st.st_ino, st.st_mtime_ns, st.st_size) != (inode, mtime_ns, size):
            stale.append(path)
    if stale and not dry_run:
        with index.write_connection(engine) as conn, conn.begin():
            for i in range(0, len(stale), _CHUNK):
                conn.execute(t.delete().where(t.c.path.in_(stale[i : i + _CHUNK])))
    return len(stale)
