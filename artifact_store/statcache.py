"""File digests cached by (absolute path, inode, mtime_ns, size, HASH_VERSION).

The same trick as dvc-data's ``state`` table: an unchanged multi-GB model file is hashed
once, then recognised by ``stat()`` alone. :class:`Hashing` gives the store its ``hash_file``
and ``hash_files`` through it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from artifact_store import hashing
from artifact_store.errors import DiskFull, InvalidArgument, is_disk_full
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


class Hashing:
    """File digests of :class:`~artifact_store.store.Store` through this cache (a mixin)."""

    if TYPE_CHECKING:
        _reader: sqlite3.Connection | None

        @property
        def _engine(self) -> Engine: ...
        @property
        def _index_where(self) -> str: ...

    def hash_file(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of the file at ``path``, from the stat cache when the file is unchanged."""
        return next(iter(self.hash_files([path]).values()))

    def hash_files(self, paths: Iterable[str | os.PathLike[str]]) -> dict[Path, str]:
        """Digests of several files, keyed by the paths as given.

        Cache lookups are one batched query; only files whose (inode, mtime, size) changed
        are read. Files younger than a couple of seconds are hashed but not cached, since
        their mtime may not yet reflect a write that is still landing.
        """
        given = [Path(p) for p in paths]
        keys: list[StatKey] = []
        for p in given:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):
                raise InvalidArgument(f"{p} is not a regular file")
            keys.append(StatKey.of(os.path.abspath(p), st))
        cached = lookup(self._reader or self._engine, keys)
        result: dict[Path, str] = {}
        fresh: dict[str, tuple[StatKey, str]] = {}
        for p, k in zip(given, keys, strict=False):
            digest = cached.get(k.path) or (fresh[k.path][1] if k.path in fresh else None)
            if digest is None:
                digest = hashing.hash_path(k.path)
                # Only cache if the file did not change while it was being read.
                if StatKey.of(k.path, os.stat(k.path)) == k:
                    fresh[k.path] = (k, digest)
            result[p] = digest
        self._remember(fresh.values())
        return result

    def prune_stat_cache(self, *, dry_run: bool = False) -> int:
        """Drop stat-cache rows of files gone or changed since; returns how many (for gc)."""
        return prune(self._engine, dry_run=dry_run)

    def _remember(self, fresh: Iterable[tuple[StatKey, str]]) -> None:
        # Filtered here too so that a run whose new digests are all too young to cache does
        # not create the engine (and import SQLAlchemy) only for store() to skip them.
        entries = [(k, d) for k, d in fresh if k.cacheable()]
        if entries:
            # A cache: on a full disk it is simply not updated.
            try:
                store(self._engine, entries)
            except DiskFull:
                pass
            except Exception as exc:
                if not is_disk_full(exc, self._index_where):
                    raise
