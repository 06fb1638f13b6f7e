"""What is true of this store's own disk, kept in the store itself (``<root>/local.sqlite``).

An index may be shared by several stores (a team's PostgreSQL, one SQLite file on a shared
disk). Its rows are facts for everyone: which key names which output, what it was built for.
Whether this store holds an artifact's files, whether they are whole here, and what they looked
like on this disk are facts of this store alone, and a store sharing the index must never see
them: a blob missing or damaged here says nothing of another store's copy. So they live here:

* ``blob_stats``: each blob's (inode, mtime_ns, size) on this disk when it became part of an
  artifact, for the cheap integrity check (inodes mean nothing on another disk);
* ``marks``: artifacts whose copy here was found damaged, never served here until rebuilt;
* ``copies``: for each key this store built or pulled, the output it holds (manifest, size,
  time, and its metadata where it differs from the index row's). A tool whose output differs
  from run to run gives each store its own bytes for one key; the index row names one of them
  (the first writer's), and each store serves the copy it holds. ``copy_blobs`` lists every
  blob of a copy, so that gc keeps them.

Only sqlite3 is used (a cache hit reads here too, and must not import SQLAlchemy). The file is
created by the first write; until then every read answers "nothing recorded". Writes other than
a commit's are best effort: on a read-only or full disk the answer is still given.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from artifact_store.reader import connect_ro

# (inode, mtime_ns, size) of a blob on this disk.
BlobStat = tuple[int, int, int]
# Stay below SQLite's bound-parameter limit (999 on old builds).
_CHUNK = 900
SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS blob_stats (digest TEXT PRIMARY KEY, inode INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, problem TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS copies (key TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL,"
    " size INTEGER NOT NULL, created_at TEXT NOT NULL, metadata TEXT)",
    "CREATE TABLE IF NOT EXISTS copy_blobs (key TEXT NOT NULL, digest TEXT NOT NULL,"
    " size INTEGER NOT NULL, PRIMARY KEY (key, digest))",
)


@dataclass(frozen=True)
class Copy:
    """The output of one key that this store holds (see the module docstring)."""

    manifest_digest: str
    size: int
    created_at: datetime
    metadata: dict[str, Any] | None  # None: the same as the index row's


class LocalFacts:
    """The store-local database at ``path``; ``seed(conn)`` runs once, when it is created
    (to carry over what an older version recorded in the index)."""

    def __init__(
        self, path: Path, seed: Callable[[sqlite3.Connection], None] | None = None
    ) -> None:
        self.path = path
        self._seed = seed
        self._conn: sqlite3.Connection | None = None
        self._writable = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- connection ------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection | None:
        """A connection for reads, or None while nothing has been recorded here."""
        if self._conn is None and self.path.is_file():
            self._open(create=False)
        elif self._conn is None and self._seed is not None:
            # What an older version recorded must be read before anything is compared with
            # it (a blob without a stat record is trusted on its first check): seed now.
            try:
                self._open(create=True)
            except (sqlite3.Error, OSError):
                pass  # a read-only or full disk: nothing recorded, as before
        return self._conn

    def _writer(self) -> sqlite3.Connection:
        """A writable connection, creating the file and its tables on first use."""
        if self._conn is None or not self._writable:
            self.close()
            self._open(create=True)
        if self._conn is None or not self._writable:
            raise sqlite3.OperationalError(f"attempt to write a readonly database ({self.path})")
        return self._conn

    def _open(self, *, create: bool) -> None:
        uri = self.path.absolute().as_uri() + ("?mode=rwc" if create else "?mode=rw")
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            # NORMAL is crash-safe under WAL; a lost last commit only means a re-hash.
            conn.execute("PRAGMA synchronous = NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._create(conn)
            self._conn, self._writable = conn, True
            return
        except (sqlite3.Error, OSError):
            if create and not self.path.is_file():
                raise
        # A read-only disk, or a full one: read what is there.
        try:
            conn = connect_ro(str(self.path))
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.close()
                return
        except sqlite3.Error:
            return
        self._conn, self._writable = conn, False

    def _create(self, conn: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE serializes concurrent first writers; the loser finds the work done.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in _SCHEMA:
                    conn.execute(statement)
                if self._seed is not None:
                    self._seed(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # WAL: a cache hit reading here never waits for a build writing here. Switching needs
        # the file to itself; if another process is in it now, the next opener switches.
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            pass

    def _write(self, statements: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``statements`` in one write transaction (raises sqlite3/OS errors)."""
        conn = self._writer()
        conn.execute("BEGIN IMMEDIATE")
        try:
            statements(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def try_write(self, statements: Callable[[sqlite3.Connection], None]) -> bool:
        """:meth:`_write`, best effort: False where this disk refuses the write (read-only,
        full, permissions) - bookkeeping must never fail a read."""
        try:
            self._write(statements)
        except (sqlite3.Error, OSError):
            return False
        return True

    # ---- blob stats ------------------------------------------------------------------------

    def blob_stats(self, digests: list[str]) -> dict[str, BlobStat]:
        conn = self._reader()
        found: dict[str, BlobStat] = {}
        if conn is None:
            return found
        for i in range(0, len(digests), _CHUNK):
            chunk = digests[i : i + _CHUNK]
            for digest, inode, mtime_ns, size in conn.execute(
                "SELECT digest, inode, mtime_ns, size FROM blob_stats"
                f" WHERE digest IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                found[digest] = (inode, mtime_ns, size)
        return found

    @staticmethod
    def put_stats(conn: sqlite3.Connection, stats: dict[str, BlobStat]) -> None:
        conn.executemany(
            "INSERT INTO blob_stats (digest, inode, mtime_ns, size) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (digest) DO UPDATE SET inode = excluded.inode,"
            " mtime_ns = excluded.mtime_ns, size = excluded.size",
            [(d, *s) for d, s in sorted(stats.items())],
        )

    @staticmethod
    def forget_stats(conn: sqlite3.Connection, digests: Iterable[str]) -> None:
        conn.executemany("DELETE FROM blob_stats WHERE digest = ?", [(d,) for d in digests])

    # ---- marks and copies ------------------------------------------------------------------

    def own(self, key: str) -> tuple[Copy | None, str | None]:
        """This store's copy of ``key`` (None if it recorded none) and its damage mark."""
        conn = self._reader()
        if conn is None:
            return None, None
        row = conn.execute(
            "SELECT c.manifest_digest, c.size, c.created_at, c.metadata, m.problem"
            " FROM (SELECT ? AS key) AS k LEFT JOIN copies AS c ON c.key = k.key"
            " LEFT JOIN marks AS m ON m.key = k.key",
            (key,),
        ).fetchone()
        copy = None
        if row[0] is not None:
            meta = None if row[3] is None else json.loads(row[3])
            copy = Copy(row[0], row[1], datetime.fromisoformat(row[2]), meta)
        return copy, row[4]

    @staticmethod
    def mark(conn: sqlite3.Connection, problems: dict[str, str]) -> None:
        conn.executemany(
            "INSERT INTO marks (key, problem) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET problem = excluded.problem",
            [(k, why[:2000]) for k, why in sorted(problems.items())],
        )

    @staticmethod
    def unmark(conn: sqlite3.Connection, key: str) -> None:
        conn.execute("DELETE FROM marks WHERE key = ?", (key,))

    @staticmethod
    def put_copy(conn: sqlite3.Connection, key: str, copy: Copy, blobs: dict[str, int]) -> None:
        """Record ``copy`` as this store's output of ``key``, with every blob it keeps."""
        meta = None if copy.metadata is None else json.dumps(copy.metadata, sort_keys=True)
        when = copy.created_at.astimezone(UTC).isoformat()
        conn.execute(
            "INSERT INTO copies (key, manifest_digest, size, created_at, metadata)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " manifest_digest = excluded.manifest_digest, size = excluded.size,"
            " created_at = excluded.created_at, metadata = excluded.metadata",
            (key, copy.manifest_digest, copy.size, when, meta),
        )
        conn.execute("DELETE FROM copy_blobs WHERE key = ?", (key,))
        conn.executemany(
            "INSERT INTO copy_blobs (key, digest, size) VALUES (?, ?, ?)",
            [(key, d, s) for d, s in sorted(blobs.items())],
        )

    @staticmethod
    def drop(conn: sqlite3.Connection, key: str) -> None:
        """Forget everything recorded here about ``key`` (its index row is gone)."""
        for table in ("copies", "copy_blobs", "marks"):
            conn.execute(f"DELETE FROM {table} WHERE key = ?", (key,))  # noqa: S608 - fixed names

    def copy_refs(self, keys: Iterable[str] | None = None) -> dict[str, list[tuple[str, int]]]:
        """The blobs of this store's copies, as ``key -> [(digest, size)]`` (all, or ``keys``)."""
        conn = self._reader()
        refs: dict[str, list[tuple[str, int]]] = {}
        if conn is None:
            return refs
        if keys is None:
            queries = [("SELECT key, digest, size FROM copy_blobs", [])]
        else:
            wanted = list(keys)
            queries = []
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT key, digest, size FROM copy_blobs WHERE key IN ({marks})"
                queries.append((sql, chunk))
        for sql, params in queries:
            for key, digest, size in conn.execute(sql, params):
                refs.setdefault(key, []).append((digest, size))
        return refs


def local_path(root: Path) -> Path:
    """Where the store at ``root`` keeps its own facts."""
    return root / "local.sqlite"


def seed_from_own_index(index_file: str | os.PathLike[str]) -> Callable[[sqlite3.Connection], None]:
    """A seed carrying over what an older rmbuild recorded in the store's own index file.

    Before this file existed, blob stats and damage marks were rows of the index. In the
    store's own default index (``<root>/index.sqlite``) they are this store's facts, so they
    are copied once; in any other index they cannot be told apart from another store's, and
    are left (a blob without a record is recorded on its first check).
    """

    def seed(conn: sqlite3.Connection) -> None:
        if not os.path.isfile(index_file):
            return
        try:
            src = connect_ro(os.fspath(index_file))
        except sqlite3.Error:
            return
        try:
            stats = src.execute("SELECT digest, inode, mtime_ns, size FROM blob_stats").fetchall()
            marks = src.execute(
                "SELECT key, coalesce(problem, 'see verify') FROM artifacts WHERE state = 'corrupt'"
            ).fetchall()
        except sqlite3.Error:  # an index from before blob stats existed: nothing to carry
            return
        finally:
            src.close()
        conn.executemany("INSERT OR IGNORE INTO blob_stats VALUES (?, ?, ?, ?)", stats)
        conn.executemany("INSERT OR IGNORE INTO marks VALUES (?, ?)", marks)

    return seed
