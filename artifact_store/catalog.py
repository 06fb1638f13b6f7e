"""The index side of the store: the action cache's rows, their uses and aliases (a mixin).

:class:`Catalog` holds every query and write of the ``artifacts``, ``artifact_uses``,
``aliases`` and ``blob_stats`` tables; :class:`artifact_store.store.Store` mixes it in. Reads
take the sqlite3 fast path where the store has one (see :mod:`artifact_store.reader`).
SQLAlchemy and :mod:`artifact_store.index` are imported inside the methods that need them.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_store.errors import (
    ArtifactNotFound,
    CorruptManifest,
    CorruptObject,
    IndexUnreachable,
    InvalidArgument,
    StoreError,
    StoreUnavailable,
    disk_full_as,
)
from artifact_store.hashing import is_digest
from artifact_store.local import BlobStat, Copy, LocalFacts, local_path, seed_from_own_index
from artifact_store.locks import GC_LOCK, FileLock
from artifact_store.names import check_key, validate_alias
from artifact_store.reader import get_fast, sqlite_path
from artifact_store.records import ArtifactRecord, Manifest, canonical_json
from artifact_store.trees import remove_aside

if TYPE_CHECKING:
    from collections.abc import Iterable
    from contextlib import AbstractContextManager

    from sqlalchemy.engine import Connection, Engine

    from artifact_store.blobs import Blobs


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class Catalog:
    """Index operations of :class:`~artifact_store.store.Store` (see that class)."""

    root: Path
    index_url: str
    _blobs: Blobs
    _reader: sqlite3.Connection | None
    # How long a commit keeps retrying while the index's server does not answer (a restart,
    # a failover), so that a build's finished output is not lost to a short outage.
    index_retry_s: float = 120.0

    if TYPE_CHECKING:

        @property
        def _engine(self) -> Engine: ...
        @property
        def _reads(self) -> Engine: ...
        def _write(self) -> AbstractContextManager[Connection]: ...
        def get_manifest(self, digest: str) -> Manifest: ...
        def _stats_for_commit(self, digests: builtins.list[str]) -> dict[str, BlobStat]: ...
        def _select(
            self, conn: Connection, *where: Any, limit: int | None = None
        ) -> builtins.list[ArtifactRecord]: ...

    @property
    def _local(self) -> LocalFacts:
        """This store's own facts (see :mod:`artifact_store.local`), opened on first use."""
        facts: LocalFacts | None = self.__dict__.get("_local_facts")
        if facts is None:
            own = self.root / "index.sqlite"
            index_file = sqlite_path(self.index_url)
            seed = (
                seed_from_own_index(own)
                if index_file is not None and Path(index_file).absolute() == own
                else None
            )
            facts = self.__dict__["_local_facts"] = LocalFacts(local_path(self.root), seed)
        return facts

    def _own(self, record: ArtifactRecord) -> ArtifactRecord:
        """``record`` (an index row) as this store has it: its own copy's output, if it
        recorded one, and its damage mark (see :mod:`artifact_store.local`)."""
        copy, mark = self._local.own(record.key)
        if copy is not None:
            record = dataclasses.replace(
                record,
                manifest_digest=copy.manifest_digest,
                size=copy.size,
                created_at=copy.created_at,
                metadata=record.metadata if copy.metadata is None else copy.metadata,
                # A mark on the row itself is an older rmbuild's; this store's copy is its own.
                state="ok",
                problem=None,
            )
        if mark is not None:
            record = dataclasses.replace(record, state="corrupt", problem=mark)
        return record

    def _own_refs(
        self, keys: Iterable[str] | None = None
    ) -> dict[str, builtins.list[tuple[str, int]]]:
        """The blobs of this store's own copies (of ``keys``, or all), for gc: key -> blobs."""
        return self._local.copy_refs(keys)

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
        CorruptObject names the first one missing. If ``key`` exists, its index row is left
        unchanged (the first writer wins, so concurrent builders both succeed, even with
        non-reproducible compilers); pass ``replace=True`` to re-point it instead. Either way
        (``model``, ``target``) is recorded as a use of ``key`` (see :meth:`add_use`) in the
        same transaction. ``metadata`` is opaque JSON.

        The returned record is this store's: where the index row names another store's output
        (a shared index) that this store does not hold, this store keeps ``manifest`` as its
        own copy of ``key`` (see :mod:`artifact_store.local`) and serves that.

        Each blob's (inode, mtime_ns, size) is recorded in the store for the cheap integrity
        check. A blob already recorded whose stat changed since is re-hashed first; if its
        content is damaged it is quarantined and CorruptObject raised (build it again).

        A server that stops answering (:class:`IndexUnreachable`) is retried with backoff for
        :attr:`index_retry_s` seconds before the error is let through: a restart of the index
        loses nothing of a finished build.
        """
        check_key(key)
        try:
            meta = json.loads(canonical_json(metadata))
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"metadata for {key!r} is not JSON-serializable: {e}") from None
        # Shared gc lock: gc cannot sweep between the blob checks below and the
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
            refs = {d: stats[d][2] for d in sorted(set(stats))}
            row = self._with_index_retry(
                f"recording artifact {key[:12]}",
                lambda: self._commit_row(key, values, now, refs, replace=replace),
            )
            self._keep_copy(key, manifest, meta, now, refs, stats, row, replaced=replace)
        record = self._with_index_retry(f"reading artifact {key[:12]}", lambda: self.get(key))
        assert record is not None  # just written, and deletes of fresh keys are not expected
        return record

    def _commit_row(
        self,
        key: str,
        values: dict[str, Any],
        now: datetime,
        refs: dict[str, int],
        *,
        replace: bool,
    ) -> tuple[bool, str, int, datetime, dict[str, Any]]:
        """Write the index row of ``key`` (and its use and blob refs) in one transaction.

        Returns whether this commit's row is the one now in the index, and that row's manifest
        digest, size, creation time and metadata.
        """
        import sqlalchemy as sa

        from artifact_store import index

        t, ab = index.artifacts, index.artifact_blobs
        # Upserts: on PostgreSQL writers are not serialized, and the former
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
                    _insert_use(conn, key, values["model"], values["target"], now)
                    if won:
                        blob_rows = [{"key": key, "digest": d, "size": n} for d, n in refs.items()]
                        index.insert_ignoring(conn, ab, blob_rows)
                    # A success is the end of the key's failure record.
                    f = index.build_failures
                    conn.execute(f.delete().where(f.c.key == key))
                    there = conn.execute(
                        sa.select(
                            t.c.manifest_digest, t.c.size, t.c.created_at, t.c.metadata
                        ).where(t.c.key == key)
                    ).one()
                return (won, there[0], there[1], there[2], there[3])
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not index.retryable(exc):
                    raise
        raise AssertionError("unreachable")

    def _keep_copy(
        self,
        key: str,
        manifest: Manifest,
        meta: dict[str, Any],
        now: datetime,
        refs: dict[str, int],
        stats: dict[str, BlobStat],
        row: tuple[bool, str, int, datetime, dict[str, Any]],
        *,
        replaced: bool,
    ) -> None:
        """Record in the store what it now holds for ``key``: the blobs' stats, no damage mark,
        and its copy - its own output, or the index row's where it holds that one already (a
        concurrent builder in this store won). Kept always, not only where the row names
        another output: a later ``--rebuild`` elsewhere re-points the row, not this copy."""
        won, row_manifest, row_size, row_created, row_meta = row
        if won or row_manifest == manifest.digest or not self._holds(row_manifest):
            mine = won or row_manifest == manifest.digest
            copy = Copy(
                manifest.digest,
                manifest.size,
                row_created if mine and not won else now,
                None if won or meta == row_meta else meta,
            )
            blobs = refs
        else:
            copy = Copy(row_manifest, row_size, row_created, None)
            blobs = self._refs_of(row_manifest, row_meta)
        local = self._local

        def write(conn: sqlite3.Connection) -> None:
            local.put_stats(conn, stats)
            local.unmark(conn, key)
            local.put_copy(conn, key, copy, blobs)

        where = local.path
        try:
            with disk_full_as(where, what="writing"):
                local._write(write)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot write {where}: {exc}") from None
        if replaced or copy.manifest_digest != row_manifest:
            # materialize trusts a complete-looking trees/<key>; it may hold other content.
            remove_aside(self.root / "trees" / key)

    def _holds(self, manifest_digest: str) -> bool:
        """Does this store have every file of ``manifest_digest`` (present, not re-hashed)?"""
        if not self._blobs.exists(manifest_digest):
            return False
        try:
            manifest = self.get_manifest(manifest_digest)
        except (CorruptObject, CorruptManifest):
            return False
        return all(self._blobs.exists(e.digest) for e in manifest.files.values())

    def _refs_of(self, manifest_digest: str, meta: dict[str, Any]) -> dict[str, int]:
        """Every blob of an output this store holds (see :meth:`_holds`), with its size."""
        manifest = self.get_manifest(manifest_digest)
        refs = {manifest_digest: self._blobs.path(manifest_digest).stat().st_size}
        refs.update({e.digest: e.size for e in manifest.files.values()})
        for digest in meta.get("blobs", []) if isinstance(meta, dict) else []:
            if isinstance(digest, str) and self._blobs.exists(digest):
                refs[digest] = self._blobs.path(digest).stat().st_size
        return refs

    def _with_index_retry(self, what: str, fn: Any) -> Any:
        """``fn()``, retried with backoff while the index does not answer, for at most
        :attr:`index_retry_s` seconds; then IndexUnreachable saying what was being done."""
        deadline = time.monotonic() + self.index_retry_s
        delay = 0.25
        while True:
            try:
                return fn()
            except IndexUnreachable as exc:
                if time.monotonic() + delay > deadline:
                    raise IndexUnreachable(
                        f"{exc} (still not answering after {self.index_retry_s:g} s of "
                        f"retries, while {what}; the build's files are in the store, but "
                        "without its index row the next run builds it again)"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

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
        """The record for exactly ``key``, or None; as this store has it (see :meth:`_own`)."""
        if self._reader is not None:
            found = get_fast(self._reader, key)
        else:
            from artifact_store import index

            with self._reads.connect() as conn:
                records = self._select(conn, index.artifacts.c.key == key)
            found = records[0] if records else None
        return None if found is None else self._own(found)

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
        local = self._local
        local.try_write(lambda c: local.drop(c, key))

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

    def _try_write(self, fn: Any) -> bool:
        """Run ``fn(conn)`` in a write transaction; False (not an error) on a full disk or a
        read-only index: bookkeeping must not fail a read."""
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
