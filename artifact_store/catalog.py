"""The index side of the store: the action cache's rows, their uses and aliases (a mixin).

:class:`Catalog` holds every query and write of the ``artifacts``, ``artifact_uses``,
``aliases`` and ``blob_stats`` tables; :class:`artifact_store.store.Store` mixes it in. Reads
take the sqlite3 fast path where the store has one (see :mod:`artifact_store.reader`).
SQLAlchemy and :mod:`artifact_store.index` are imported inside the methods that need them.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_store import hashing
from artifact_store.errors import (
    ArtifactNotFound,
    CorruptManifest,
    CorruptObject,
    InvalidArgument,
    StoreError,
)
from artifact_store.hashing import is_digest
from artifact_store.locks import GC_LOCK, FileLock
from artifact_store.names import check_key, validate_alias
from artifact_store.reader import (
    blob_stats_fast,
    get_fast,
)
from artifact_store.records import ArtifactRecord, Manifest, canonical_json
from artifact_store.trees import remove_aside

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.engine import Connection, Engine

    from artifact_store.blobs import Blobs

# (inode, mtime_ns, size) of a blob, as recorded in blob_stats.
BlobStat = tuple[int, int, int]


def utcnow() -> datetime:
    return datetime.now(UTC)


def blob_stat(path: Path) -> BlobStat:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _metadata_blobs(metadata: dict[str, Any]) -> list[str]:
    blobs = metadata.get("blobs", [])
    if not isinstance(blobs, list) or not all(isinstance(d, str) and is_digest(d) for d in blobs):
        raise InvalidArgument('metadata["blobs"] must be a list of SHA-256 hex digests')
    return blobs


def _insert_use(conn: Connection, key: str, model: str, target: str, now: datetime) -> bool:
    """Add use (key, model, target) unless present, in ``conn``'s transaction; True if added."""
    from artifact_store import index

    row = {"key": key, "model": model, "target": target, "first_used_at": now}
    return index.insert_ignoring(conn, index.artifact_uses, [row]) == 1


def _put_blob_stats(conn: Connection, stats: dict[str, BlobStat]) -> None:
    """Upsert blob_stats rows in ``conn``'s transaction, in digest order (no deadlocks)."""
    from artifact_store import index

    rows = [
        {"digest": d, "inode": s[0], "mtime_ns": s[1], "size": s[2]}
        for d, s in sorted(stats.items())
    ]
    index.upsert(conn, index.blob_stats, rows)


class Catalog:
    """Index operations of :class:`~artifact_store.store.Store` (see that class)."""

    root: Path
    _blobs: Blobs
    _reader: sqlite3.Connection | None

    if TYPE_CHECKING:

        @property
        def _engine(self) -> Engine: ...
        @property
        def _reads(self) -> Engine: ...
        def _write(self) -> AbstractContextManager[Connection]: ...
        def get_manifest(self, digest: str) -> Manifest: ...
        def _quarantine_and_mark(self, bad: dict[str, str]) -> None: ...
        def _select(
            self, conn: Connection, *where: Any, limit: int | None = None
        ) -> builtins.list[ArtifactRecord]: ...

    def _gc_shared(self) -> FileLock:
        """The store-wide gc lock, shared (see :mod:`artifact_store.locks`)."""
        return FileLock(self.root / "locks" / GC_LOCK, shared=True)

    def commit(
        self,
        key: str,
        manifest: Manifest,
        *,
        model: str,
        target: str,
        backend: str,
        metadata: dict[str, Any],
        replace: bool = False,
    ) -> ArtifactRecord:
        """Record ``key`` -> ``manifest`` in the index; this is the moment an artifact exists.

        Every blob (files, the manifest, ``metadata["blobs"]``) must already be stored;
        CorruptObject names the first one missing. If ``key`` exists, the existing record is
        returned unchanged (the first writer wins, so concurrent builders both succeed, even
        with non-reproducible compilers); pass ``replace=True`` to re-point it instead.
        Either way (``model``, ``target``) is recorded as a use of ``key`` (see
        :meth:`add_use`) in the same transaction. ``metadata`` is opaque JSON.

        Each blob's (inode, mtime_ns, size) is recorded for the cheap integrity check (issue 6
        #8). A blob already recorded whose stat changed since is re-hashed first; if its
        content is damaged it is quarantined and CorruptObject raised (build it again).
        """
        check_key(key)
        try:
            meta = json.loads(canonical_json(metadata))
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"metadata for {key!r} is not JSON-serializable: {e}") from None
        import sqlalchemy as sa

        from artifact_store import index

        # Shared gc lock (issue 6 #9): gc cannot sweep between the blob checks below and the
        # row that makes them live; a blob gc took earlier is reported missing, never lost.
        with self._gc_shared():
            if not self._blobs.exists(manifest.digest):
                if self._blobs.put_bytes(manifest.to_json()) != manifest.digest:
                    raise CorruptManifest(manifest.digest, "digest does not match its content")
            for rel, entry in manifest.files.items():
                if not self._blobs.exists(entry.digest):
                    raise CorruptObject(
                        entry.digest, f"missing (file {rel!r} of {key}); put it first"
                    )
            for digest in _metadata_blobs(meta):
                if not self._blobs.exists(digest):
                    raise CorruptObject(digest, f"missing (metadata blob of {key}); put it first")
            digests = [manifest.digest, *(e.digest for e in manifest.files.values())]
            stats = self._stats_for_commit([*digests, *_metadata_blobs(meta)])
            t, ab = index.artifacts, index.artifact_blobs
            now = utcnow()
            values = {
                "manifest_digest": manifest.digest,
                "model": model,
                "target": target,
                "backend": backend,
                "last_used_at": now,
                "size": manifest.size,
                "metadata": meta,
                "state": "ok",
                "problem": None,
            }
            refs = [{"key": key, "digest": d, "size": stats[d][2]} for d in sorted(set(stats))]
            # Upserts (issue 9): on PostgreSQL writers are not serialized, and the former
            # select-then-insert let 2-6 of 8 concurrent committers of one key fail on the
            # primary key. ON CONFLICT waits for the other writer and then does nothing (the
            # first writer wins) or, with ``replace``, re-points the row. Rows are written in
            # one order (artifact, use, blobs sorted by digest) so writers cannot deadlock; a
            # lost race that remains (the artifact deleted meanwhile) is retried once.
            for attempt in (1, 2):
                try:
                    with self._write() as conn:
                        row = {"key": key, "created_at": now, **values}
                        if replace:
                            # A rebuild is a new artifact under the old key: created_at
                            # moves, which is how a parallel `compile --rebuild` builds it once.
                            index.upsert(conn, t, [row])
                            conn.execute(ab.delete().where(ab.c.key == key))
                            won = True
                        else:
                            won = index.insert_ignoring(conn, t, [row]) == 1
                        _insert_use(conn, key, model, target, now)
                        if won:
                            index.insert_ignoring(conn, ab, refs)
                        _put_blob_stats(conn, stats)
                        # A success is the end of the key's failure record (issue 9).
                        f = index.build_failures
                        conn.execute(f.delete().where(f.c.key == key))
                    break
                except sa.exc.DBAPIError as exc:
                    if attempt == 2 or not index.retryable(exc):
                        raise
            replaced = replace
            if replaced:
                # materialize trusts a complete-looking trees/<key>; it is now the old content.
                remove_aside(self.root / "trees" / key)
        record = self.get(key)
        assert record is not None  # just written, and deletes of fresh keys are not expected
        return record

    def add_use(self, key: str, model: str, target: str) -> bool:
        """Record that the build of (``model``, ``target``) uses artifact ``key``.

        For a build that finds ``key`` as a cache hit although another (model, target) made
        it, so that :meth:`list` finds it under both. Idempotent: True if the use is new.
        ArtifactNotFound for an unknown key. This writes (and so loads SQLAlchemy); on a
        cache hit, ask :meth:`has_use` first, which usually does not.
        """
        import sqlalchemy as sa

        from artifact_store import index

        t = index.artifacts
        # Two tries, as in commit: a concurrent delete of the artifact fails ours (its foreign
        # key); the retry sees it gone.
        for attempt in (1, 2):
            try:
                with self._write() as conn:
                    if conn.execute(sa.select(t.c.key).where(t.c.key == key)).first() is None:
                        raise ArtifactNotFound(key)
                    return _insert_use(conn, key, model, target, utcnow())
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not index.retryable(exc):
                    raise
        raise AssertionError("unreachable")

    def has_use(self, key: str, model: str, target: str) -> bool:
        """True if (``model``, ``target``) is a recorded use of ``key`` (False for no such key).

        A read, so it takes the sqlite3 fast path when the store has one: the common
        ``if not store.has_use(...): store.add_use(...)`` of a cache hit imports no SQLAlchemy
        once the use is known.
        """
        if self._reader is not None:
            row = self._reader.execute(
                "SELECT 1 FROM artifact_uses WHERE key = ? AND model = ? AND target = ?",
                (key, model, target),
            ).fetchone()
            return row is not None
        import sqlalchemy as sa

        from artifact_store import index

        u = index.artifact_uses
        q = sa.select(u.c.key).where(u.c.key == key, u.c.model == model, u.c.target == target)
        with self._reads.connect() as conn:
            return conn.execute(q).first() is not None

    def get(self, key: str) -> ArtifactRecord | None:
        """The record for exactly ``key``, or None."""
        if self._reader is not None:
            return get_fast(self._reader, key)
        from artifact_store import index

        with self._reads.connect() as conn:
            records = self._select(conn, index.artifacts.c.key == key)
        return records[0] if records else None

    def delete(self, key: str) -> None:
        """Remove the row for ``key``, its aliases and uses; blobs stay until :meth:`gc`."""
        from artifact_store import index

        with self._write() as conn:
            # The foreign keys cascade too; deleting explicitly does not depend on the database
            # enforcing them.
            conn.execute(index.aliases.delete().where(index.aliases.c.key == key))
            conn.execute(index.artifact_uses.delete().where(index.artifact_uses.c.key == key))
            conn.execute(index.artifact_blobs.delete().where(index.artifact_blobs.c.key == key))
            gone = conn.execute(index.artifacts.delete().where(index.artifacts.c.key == key))
            if gone.rowcount == 0:
                raise ArtifactNotFound(key)

    def tag(self, alias: str, key: str) -> None:
        """Point ``alias`` at ``key`` (re-pointing it if it exists)."""
        validate_alias(alias)
        import sqlalchemy as sa

        from artifact_store import index

        a = index.aliases
        for attempt in (1, 2):
            try:
                with self._write() as conn:
                    t = index.artifacts
                    if conn.execute(sa.select(t.c.key).where(t.c.key == key)).first() is None:
                        raise ArtifactNotFound(key)
                    row = {"alias": alias, "key": key, "updated_at": utcnow()}
                    index.upsert(conn, a, [row])
                return
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not index.retryable(exc):
                    raise

    def untag(self, alias: str) -> None:
        """Remove ``alias`` (ArtifactNotFound if there is no such alias)."""
        from artifact_store import index

        with self._write() as conn:
            gone = conn.execute(index.aliases.delete().where(index.aliases.c.alias == alias))
            if gone.rowcount == 0:
                raise ArtifactNotFound(alias, "no such alias")

    def touch(self, key: str) -> None:
        """Mark ``key`` as used now (gc's LRU eviction order)."""
        from artifact_store import index

        t = index.artifacts
        with self._write() as conn:
            done = conn.execute(t.update().where(t.c.key == key).values(last_used_at=utcnow()))
            if done.rowcount == 0:
                raise ArtifactNotFound(key)

    # ---- integrity records (issue 6 #8) -------------------------------------------------------

    def blob_stats(self, digests: builtins.list[str]) -> dict[str, BlobStat]:
        """Recorded (inode, mtime_ns, size) of ``digests`` (those without a record are absent)."""
        if self._reader is not None:
            return blob_stats_fast(self._reader, digests)
        import sqlalchemy as sa

        from artifact_store import index

        b = index.blob_stats
        found: dict[str, BlobStat] = {}
        with self._reads.connect() as conn:
            for i in range(0, len(digests), 900):
                q = sa.select(b.c.digest, b.c.inode, b.c.mtime_ns, b.c.size).where(
                    b.c.digest.in_(digests[i : i + 900])
                )
                for digest, inode, mtime_ns, size in conn.execute(q):
                    found[digest] = (inode, mtime_ns, size)
        return found

    def _stats_for_commit(self, digests: builtins.list[str]) -> dict[str, BlobStat]:
        """Current stats of ``digests``; a recorded blob whose stat moved is re-hashed first."""
        unique = list(dict.fromkeys(digests))
        recorded = self.blob_stats(unique)
        stats: dict[str, BlobStat] = {}
        bad: dict[str, str] = {}
        for digest in unique:
            path = self._blobs.path(digest)
            now = blob_stat(path)
            old = recorded.get(digest)
            if old is not None and old != now and hashing.hash_path(path) != digest:
                bad[digest] = "is corrupt (content does not match digest)"
                continue
            stats[digest] = now
        if bad:
            self._quarantine_and_mark(bad)
            digest, problem = next(iter(bad.items()))
            raise CorruptObject(digest, f"{problem}; moved to quarantine, build again")
        return stats

    def record_blob_stats(self, stats: dict[str, BlobStat]) -> bool:
        """Record blob stats (best effort: False where the index cannot be written now)."""
        if not stats:
            return True
        return self._try_write(lambda conn: _put_blob_stats(conn, stats))

    def forget_blob_stats(self, digests: builtins.list[str]) -> bool:
        """Drop the stat records of ``digests`` (quarantined or collected blobs); best effort."""
        from artifact_store import index

        b = index.blob_stats

        def drop(conn: Connection) -> None:
            for i in range(0, len(digests), 900):
                conn.execute(b.delete().where(b.c.digest.in_(digests[i : i + 900])))

        return self._try_write(drop) if digests else True

    def mark_corrupt(self, problems: dict[str, str]) -> bool:
        """Mark artifacts (key -> why) corrupt: never a hit again until rebuilt; best effort."""
        from artifact_store import index

        t = index.artifacts

        def mark(conn: Connection) -> None:
            for key, why in problems.items():
                conn.execute(
                    t.update().where(t.c.key == key).values(state="corrupt", problem=why[:2000])
                )

        return self._try_write(mark) if problems else True

    def clear_corrupt(self, key: str) -> bool:
        """Mark ``key`` healthy again (a full re-hash found it whole); best effort."""
        from artifact_store import index

        t = index.artifacts
        return self._try_write(
            lambda conn: conn.execute(
                t.update().where(t.c.key == key).values(state="ok", problem=None)
            )
        )

    def _try_write(self, fn: Any) -> bool:
        """Run ``fn(conn)`` in a write transaction; False (not an error) on a full disk or a
        read-only index: bookkeeping must not fail a read (issue 6 #13)."""
        from artifact_store.errors import is_disk_full

        try:
            with self._write() as conn:
                fn(conn)
        except Exception as exc:
            if is_disk_full(exc) or _read_only_db(exc) or isinstance(exc, StoreError):
                return False
            raise
        return True


def _read_only_db(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.Error) and (
        getattr(orig, "sqlite_errorcode", None) == 8 or "readonly database" in str(orig)
    )
