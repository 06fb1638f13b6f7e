"""The store: content-addressed blobs on disk plus an SQL index (the action cache).

Layout under ``root``::

    objects/ab/cdef…   immutable, read-only blobs (file contents and manifests)
    tmp/               scratch on the same filesystem (ingest temp files, build dirs)
    locks/             one flock file per key being built
    trees/<key>/       materialized artifacts (hardlinks to blobs)
    logs/              for callers' build logs
    index.sqlite       the default index (any SQLAlchemy URL may replace it)

SQLAlchemy costs ~0.2 s to import, most of a CLI cache hit. So for a plain ``sqlite:///`` file
index already at the head revision, the hit's reads (:meth:`Store.get` and the stat-cache
lookup) use a stdlib ``sqlite3`` read-only connection, and SQLAlchemy is imported and the engine
created only on the first write or other query. Every other index opens the engine at once.

Write order is what makes crashes harmless: blobs are durable before the manifest that
names them, and the manifest before the index row that names it. A crash at any point
leaves only unreferenced blobs, which :meth:`Store.gc` removes.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_store import hashing, statcache
from artifact_store.blobs import Blobs
from artifact_store.errors import (
    AmbiguousRef,
    ArtifactNotFound,
    CorruptManifest,
    CorruptObject,
    InvalidAlias,
    LockTimeout,
    StoreError,
    StoreUnavailable,
)
from artifact_store.hashing import is_digest
from artifact_store.records import ArtifactRecord, FileEntry, GcReport, Manifest, canonical_json
from artifact_store.schema_version import HEAD_REVISION

# sqlalchemy and artifact_store.index (which imports it) are imported inside the methods that
# need them, never at module level: see the module docstring.
if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

MIN_PREFIX = 4
# The lock file inside a busy build dir (see Store.build_dir and gc).
IN_USE = ".in-use"
_MAX_CANDIDATES = 50
# Keys and aliases name files (trees/<key>, locks/<key>.lock), so both are kept to a
# filesystem-safe alphabet.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
# Hardlinking fails across filesystems, on files we don't own (protected_hardlinks), past the
# link limit, or where links are unsupported; all of these fall back to a copy.
_NO_LINK_ERRNOS = (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP)


def validate_alias(alias: str) -> None:
    """Raise :class:`InvalidAlias` unless ``alias`` is usable.

    An alias must match ``[A-Za-z0-9][A-Za-z0-9._-]*`` (at most 200 characters) and must not be
    all hex of length >= 4, because ``resolve`` would then not know whether it is an alias or a
    key prefix.
    """
    if not isinstance(alias, str) or not _NAME_RE.fullmatch(alias):
        raise InvalidAlias(alias, "use letters, digits, '.', '_' or '-', starting alphanumeric")
    if len(alias) >= MIN_PREFIX and _HEX_RE.fullmatch(alias):
        raise InvalidAlias(alias, "all-hex names look like key prefixes; add a non-hex letter")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _NAME_RE.fullmatch(key):
        raise StoreError(f"invalid key {key!r}: use at most 200 of [A-Za-z0-9._-]")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _metadata_blobs(metadata: dict[str, Any]) -> list[str]:
    blobs = metadata.get("blobs", [])
    if not isinstance(blobs, list) or not all(isinstance(d, str) and is_digest(d) for d in blobs):
        raise StoreError('metadata["blobs"] must be a list of SHA-256 hex digests')
    return blobs


def _insert_use(conn: Connection, key: str, model: str, target: str, now: datetime) -> bool:
    """Add use (key, model, target) unless present, in ``conn``'s transaction; True if added."""
    import sqlalchemy as sa

    from artifact_store import index

    u = index.artifact_uses
    q = sa.select(u.c.key).where(u.c.key == key, u.c.model == model, u.c.target == target)
    if conn.execute(q).first() is not None:
        return False
    conn.execute(u.insert().values(key=key, model=model, target=target, first_used_at=now))
    return True


class Store:
    """A local artifact store; see the module docstring for the layout.

    One ``Store`` per process or thread is the intended use; open it with a context manager
    (or call :meth:`close`) to release database connections.
    """

    def __init__(self, root: str | os.PathLike[str], index_url: str | None = None) -> None:
        self.root: Path = Path(root).expanduser().absolute()
        try:
            for sub in ("objects", "tmp", "locks", "trees", "logs"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot use {self.root} as a store: {exc.strerror or exc}"
            ) from None
        self.index_url = index_url or f"sqlite:///{self.root / 'index.sqlite'}"
        self._blobs = Blobs(self.root / "objects", self.root / "tmp")
        self._sa_engine: Engine | None = None
        # Fast path for reads (see the module docstring); None means "use the engine".
        self._reader = _open_reader(self.index_url)
        if self._reader is None:
            self._engine  # noqa: B018  # create and migrate now, so errors surface at open

    @property
    def _engine(self) -> Engine:
        """The SQLAlchemy engine, created (and the schema brought to head) on first use."""
        if self._sa_engine is None:
            import sqlalchemy as sa

            from artifact_store import index

            # A bad URL, a missing DB driver, a file that is not a database, a server that is
            # down: the index is unusable, which is the user's to fix, not a crash.
            try:
                engine = index.create_engine(self.index_url)
            except (sa.exc.SQLAlchemyError, ImportError) as exc:
                raise StoreUnavailable(
                    f"cannot open the index {_safe_url(self.index_url)}: {exc}"
                ) from None
            try:
                index.ensure_schema(engine, self.root / "locks" / "index-migrate.lock")
            except (sa.exc.SQLAlchemyError, ImportError) as exc:
                engine.dispose()
                raise StoreUnavailable(
                    f"cannot open the index {_safe_url(self.index_url)}: {str(exc).splitlines()[0]}"
                ) from None
            except BaseException:
                engine.dispose()
                raise
            self._sa_engine = engine
        return self._sa_engine

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the index's connections. The store may not be used afterwards."""
        if self._reader is not None:
            self._reader.close()
        if self._sa_engine is not None:
            self._sa_engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        from artifact_store import index

        with index.write_connection(self._engine) as conn, conn.begin():
            yield conn

    # ---- blobs -----------------------------------------------------------------------------

    def put_file(self, path: str | os.PathLike[str], *, move: bool = False) -> str:
        """Store the file at ``path`` as a blob and return its digest.

        With ``move=True`` the source is renamed into the store when it is on the same
        filesystem (cheap ingest of build outputs); the source path is then gone. An existing
        blob is never rewritten.
        """
        p = Path(path)
        if move:
            return self._blobs.move_file(p)[0]
        return self._copy_in([p])[0][0]

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` as a blob and return its digest."""
        return self._blobs.put_bytes(data)

    def has_blob(self, digest: str) -> bool:
        """True if blob ``digest`` is present (not checked for corruption; see verify_blob)."""
        return self._blobs.exists(digest)

    def blob_path(self, digest: str) -> Path:
        """Where blob ``digest`` lives (whether or not it exists). Never write to it."""
        return self._blobs.path(digest)

    def read_bytes(self, digest: str) -> bytes:
        """The content of blob ``digest``, checked against the digest (CorruptObject if not)."""
        return self._blobs.read_bytes(digest)

    def verify_blob(self, digest: str) -> bool:
        """Re-hash blob ``digest``; False if it is missing or corrupt."""
        return self._blobs.verify(digest)

    def _copy_in(self, paths: list[Path]) -> list[tuple[str, int]]:
        # Stat cache first: an unchanged input whose blob is already stored is not read.
        keys = [statcache.StatKey.of(os.path.abspath(p), os.stat(p)) for p in paths]
        cached = statcache.lookup(self._reader or self._engine, keys)
        out: list[tuple[str, int]] = []
        fresh: list[tuple[statcache.StatKey, str]] = []
        for p, k in zip(paths, keys, strict=False):
            known = (cached[k.path], k.size) if k.path in cached else None
            digest, size = self._blobs.put_file(p, known=known)
            out.append((digest, size))
            if known is None and statcache.StatKey.of(k.path, os.stat(p)) == k:
                fresh.append((k, digest))
        self._remember(fresh)
        return out

    # ---- hashing ---------------------------------------------------------------------------

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
        keys: list[statcache.StatKey] = []
        for p in given:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(f"{p} is not a regular file")
            keys.append(statcache.StatKey.of(os.path.abspath(p), st))
        cached = statcache.lookup(self._reader or self._engine, keys)
        result: dict[Path, str] = {}
        fresh: dict[str, tuple[statcache.StatKey, str]] = {}
        for p, k in zip(given, keys, strict=False):
            digest = cached.get(k.path) or (fresh[k.path][1] if k.path in fresh else None)
            if digest is None:
                digest = hashing.hash_path(k.path)
                # Only cache if the file did not change while it was being read.
                if statcache.StatKey.of(k.path, os.stat(k.path)) == k:
                    fresh[k.path] = (k, digest)
            result[p] = digest
        self._remember(fresh.values())
        return result

    def _remember(self, fresh: Iterable[tuple[statcache.StatKey, str]]) -> None:
        # Filtered here too so that a run whose new digests are all too young to cache does
        # not create the engine (and import SQLAlchemy) only for statcache.store to skip them.
        entries = [(k, d) for k, d in fresh if k.cacheable()]
        if entries:
            statcache.store(self._engine, entries)

    # ---- trees -----------------------------------------------------------------------------

    def put_tree(self, directory: str | os.PathLike[str], *, move: bool = False) -> Manifest:
        """Store every regular file under ``directory`` and its manifest; return the manifest.

        Paths are POSIX relpaths. A symlink is stored as the content it points to, and must
        point inside ``directory`` (StoreError otherwise, before anything is stored). Empty
        directories are not recorded. With ``move=True`` files are renamed into the store
        and ``directory`` is left depleted; the caller removes it.
        """
        top = Path(directory).absolute()
        if not top.is_dir():
            raise StoreError(f"{top} is not a directory")
        entries = list(_walk_tree(top))
        # Files reached twice (through a symlink) are ingested once, by their real path, so
        # a move cannot pull a file out from under its second name.
        by_real: dict[str, list[str]] = {}
        modes: dict[str, int] = {}
        for rel, real in entries:
            by_real.setdefault(real, []).append(rel)
            modes[real] = 0o755 if os.stat(real).st_mode & 0o111 else 0o644
        reals = list(by_real)
        if move:
            results = [self._blobs.move_file(Path(r)) for r in reals]
        else:
            results = self._copy_in([Path(r) for r in reals])
        files: dict[str, FileEntry] = {}
        for real, (digest, size) in zip(reals, results, strict=False):
            for rel in by_real[real]:
                files[rel] = FileEntry(digest, size, modes[real])
        manifest = Manifest.from_files(files)
        self._blobs.put_bytes(manifest.to_json())
        return manifest

    def get_manifest(self, digest: str) -> Manifest:
        """Load and validate manifest blob ``digest`` (CorruptObject / CorruptManifest)."""
        return Manifest.from_json(self._blobs.read_bytes(digest), digest)

    # ---- index -----------------------------------------------------------------------------

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
        """
        _check_key(key)
        try:
            meta = json.loads(canonical_json(metadata))
        except (TypeError, ValueError) as e:
            raise StoreError(f"metadata for {key!r} is not JSON-serializable: {e}") from None
        if not self._blobs.exists(manifest.digest):
            if self._blobs.put_bytes(manifest.to_json()) != manifest.digest:
                raise CorruptManifest(manifest.digest, "digest does not match its content")
        for rel, entry in manifest.files.items():
            if not self._blobs.exists(entry.digest):
                raise CorruptObject(entry.digest, f"missing (file {rel!r} of {key}); put it first")
        for digest in _metadata_blobs(meta):
            if not self._blobs.exists(digest):
                raise CorruptObject(digest, f"missing (metadata blob of {key}); put it first")
        import sqlalchemy as sa

        from artifact_store import index

        t = index.artifacts
        now = _utcnow()
        values = {
            "manifest_digest": manifest.digest,
            "model": model,
            "target": target,
            "backend": backend,
            "last_used_at": now,
            "size": manifest.size,
            "metadata": meta,
        }
        # Two tries: where writers are not serialized (not SQLite), a concurrent commit of the
        # same key (or use) fails our insert and rolls back the whole transaction; the retry
        # finds their row, which wins, and records only our use of it.
        for attempt in (1, 2):
            replaced = False
            try:
                with self._write() as conn:
                    existing = conn.execute(sa.select(t.c.key).where(t.c.key == key)).first()
                    if existing is None:
                        conn.execute(t.insert().values(key=key, created_at=now, **values))
                    elif replace:
                        conn.execute(t.update().where(t.c.key == key).values(**values))
                        replaced = True
                    _insert_use(conn, key, model, target, now)
                break
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
        if replaced:
            # materialize trusts a complete-looking trees/<key>; it is now the old content.
            _remove_aside(self.root / "trees" / key)
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
        # Two tries, as in commit: a concurrent insert of the same use (or a delete of the
        # artifact) fails ours; the retry sees what they did.
        for attempt in (1, 2):
            try:
                with self._write() as conn:
                    if conn.execute(sa.select(t.c.key).where(t.c.key == key)).first() is None:
                        raise ArtifactNotFound(key)
                    return _insert_use(conn, key, model, target, _utcnow())
            except sa.exc.IntegrityError:
                if attempt == 2:
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
        with self._engine.connect() as conn:
            return conn.execute(q).first() is not None

    def get(self, key: str) -> ArtifactRecord | None:
        """The record for exactly ``key``, or None."""
        if self._reader is not None:
            return _get_fast(self._reader, key)
        from artifact_store import index

        with self._engine.connect() as conn:
            records = self._select(conn, index.artifacts.c.key == key)
        return records[0] if records else None

    def _select(
        self, conn: Connection, *where: Any, limit: int | None = None
    ) -> list[ArtifactRecord]:
        import sqlalchemy as sa

        from artifact_store import index

        t, a, u = index.artifacts, index.aliases, index.artifact_uses
        q = sa.select(t).where(*where).order_by(t.c.created_at.desc(), t.c.key)
        if limit is not None:
            q = q.limit(limit)
        rows = conn.execute(q).mappings().all()
        if not rows:
            return []
        keys = [r["key"] for r in rows]
        names: dict[str, list[str]] = {}
        uses: dict[str, builtins.list[tuple[str, str]]] = {}
        q2 = sa.select(a.c.alias, a.c.key).order_by(a.c.alias)
        q3 = sa.select(u.c.model, u.c.target, u.c.key)
        if len(keys) <= 500:
            q2 = q2.where(a.c.key.in_(keys))
            q3 = q3.where(u.c.key.in_(keys))
        for alias, key in conn.execute(q2):
            names.setdefault(key, []).append(alias)
        for model, target, key in conn.execute(q3):
            uses.setdefault(key, []).append((model, target))
        return [
            ArtifactRecord(
                key=r["key"],
                manifest_digest=r["manifest_digest"],
                model=r["model"],
                target=r["target"],
                backend=r["backend"],
                created_at=r["created_at"],
                last_used_at=r["last_used_at"],
                size=r["size"],
                metadata=r["metadata"],
                aliases=tuple(names.get(r["key"], ())),
                # Sorted here, not by ORDER BY: a server's collation may differ from Python's
                # (and the fast path's) code-point order.
                uses=tuple(sorted(uses.get(r["key"], ()))),
            )
            for r in rows
        ]

    def resolve(self, ref: str) -> ArtifactRecord:
        """Find an artifact by exact key, alias, or unique hex prefix (>= 4 chars), like git."""
        import sqlalchemy as sa

        from artifact_store import index

        t, a = index.artifacts, index.aliases
        with self._engine.connect() as conn:
            found = self._select(conn, t.c.key == ref)
            if found:
                return found[0]
            alias_key = conn.execute(sa.select(a.c.key).where(a.c.alias == ref)).scalar()
            if alias_key is not None:
                found = self._select(conn, t.c.key == alias_key)
                if found:
                    return found[0]
            if not ref or not _HEX_RE.fullmatch(ref):
                raise ArtifactNotFound(ref)
            if len(ref) < MIN_PREFIX:
                raise ArtifactNotFound(
                    ref, f"prefix too short; give at least {MIN_PREFIX} hex characters"
                )
            found = self._select(
                conn, t.c.key.startswith(ref.lower(), autoescape=True), limit=_MAX_CANDIDATES
            )
        if not found:
            raise ArtifactNotFound(ref)
        if len(found) > 1:
            raise AmbiguousRef(ref, found)
        return found[0]

    def list(
        self, *, model: str | None = None, target: str | None = None, backend: str | None = None
    ) -> list[ArtifactRecord]:
        """Artifacts matching every given filter, newest first.

        ``model`` and ``target`` match an artifact's uses (see :meth:`add_use`), not only its
        first builder's: it is listed if any one use matches both.
        """
        import sqlalchemy as sa

        from artifact_store import index

        t, u = index.artifacts, index.artifact_uses
        where = [t.c.backend == backend] if backend is not None else []
        if model is not None or target is not None:
            # IN (subquery), not a join: an artifact with several matching uses is listed once.
            pairs = ((u.c.model, model), (u.c.target, target))
            conds = [col == val for col, val in pairs if val is not None]
            where.append(t.c.key.in_(sa.select(u.c.key).where(*conds)))
        with self._engine.connect() as conn:
            return self._select(conn, *where)

    def delete(self, key: str) -> None:
        """Remove the row for ``key``, its aliases and uses; blobs stay until :meth:`gc`."""
        from artifact_store import index

        with self._write() as conn:
            # The foreign keys cascade too; deleting explicitly does not depend on the database
            # enforcing them.
            conn.execute(index.aliases.delete().where(index.aliases.c.key == key))
            conn.execute(index.artifact_uses.delete().where(index.artifact_uses.c.key == key))
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
                    conn.execute(a.delete().where(a.c.alias == alias))
                    conn.execute(a.insert().values(alias=alias, key=key, updated_at=_utcnow()))
                return
            except sa.exc.IntegrityError:
                if attempt == 2:
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
            done = conn.execute(t.update().where(t.c.key == key).values(last_used_at=_utcnow()))
            if done.rowcount == 0:
                raise ArtifactNotFound(key)

    # ---- materialize / verify ----------------------------------------------------------------

    def materialize(self, key: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Lay out artifact ``key`` as a directory and return it (default ``trees/<key>``).

        Files are read-only hardlinks to blobs (copies across filesystems, and for
        executables, whose mode a shared blob inode cannot carry). The tree is built in a
        sibling temp dir and renamed into place, so readers see all of it or nothing, and
        concurrent callers are fine. An existing complete tree is reused; a user-given
        ``dest`` that exists and does not match is refused rather than overwritten.
        """
        record = self.get(key)
        if record is None:
            raise ArtifactNotFound(key)
        manifest = self.get_manifest(record.manifest_digest)
        managed = dest is None
        out = (self.root / "trees" / key) if dest is None else Path(dest).absolute()
        if _tree_complete(out, manifest):
            self.touch(key)
            return out
        if os.path.lexists(out):
            if managed:
                _remove_aside(out)
            elif out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
                out.rmdir()
            else:
                raise StoreError(
                    f"{out} exists and is not artifact {key}; remove it or pick another dest"
                )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            for rel, entry in manifest.files.items():
                target = tmp / rel
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._place(entry, target)
                except (FileExistsError, NotADirectoryError):
                    raise CorruptManifest(
                        manifest.digest, f"path {rel!r} clashes with another"
                    ) from None
            os.chmod(tmp, 0o755)  # mkdtemp makes 0o700
            try:
                os.rename(tmp, out)
            except OSError as e:
                # Someone else finished the same tree first: theirs is as good as ours.
                lost_race = e.errno in (errno.EEXIST, errno.ENOTEMPTY)
                if not lost_race or not _tree_complete(out, manifest):
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.touch(key)
        return out

    def _place(self, entry: FileEntry, target: Path) -> None:
        src = self._blobs.path(entry.digest)
        if not src.exists():
            raise CorruptObject(entry.digest, f"missing (needed for {target.name})")
        if not entry.executable:
            try:
                os.link(src, target)
                return
            except OSError as e:
                if e.errno not in _NO_LINK_ERRNOS:
                    raise
        shutil.copyfile(src, target)
        os.chmod(target, 0o555 if entry.executable else 0o444)

    def verify(self, key: str) -> builtins.list[str]:
        """Re-hash every blob of artifact ``key``; return problems found (empty = healthy)."""
        record = self.get(key)
        if record is None:
            raise ArtifactNotFound(key)
        problems: builtins.list[str] = []
        md = record.manifest_digest
        if not self._blobs.exists(md):
            return [f"manifest blob {md} is missing"]
        if not self._blobs.verify(md):
            return [f"manifest blob {md} is corrupt (content does not match digest)"]
        try:
            manifest = self.get_manifest(md)
        except StoreError as e:
            return [str(e)]
        checked: dict[str, str | None] = {}
        wanted = [(f"file {rel!r}", e.digest, e.size) for rel, e in manifest.files.items()]
        wanted += [("metadata blob", d, None) for d in record.metadata.get("blobs", [])]
        for what, digest, size in wanted:
            if digest not in checked:
                checked[digest] = self._check_blob(digest, size)
            if checked[digest]:
                problems.append(f"{what}: blob {digest} {checked[digest]}")
        return problems

    def _check_blob(self, digest: str, size: int | None) -> str | None:
        path = self._blobs.path(digest)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            return "is missing"
        if size is not None and actual != size:
            return f"has {actual} bytes, manifest says {size}"
        if not self._blobs.verify(digest):
            return "is corrupt (content does not match digest)"
        return None

    # ---- locks, scratch, gc ------------------------------------------------------------------

    @contextmanager
    def lock(self, key: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the per-key build lock (flock; released by the kernel if the holder dies).

        ``timeout=None`` waits forever; otherwise LockTimeout after ``timeout`` seconds.
        """
        from filelock import FileLock, Timeout

        _check_key(key)
        path = self.root / "locks" / f"{key}.lock"
        fl = FileLock(str(path), timeout=-1 if timeout is None else timeout)
        try:
            fl.acquire()
        except Timeout:
            raise LockTimeout(key, str(path), timeout) from None
        try:
            yield
        finally:
            fl.release()

    def tmpdir(self, prefix: str) -> Path:
        """A fresh directory under ``tmp/`` (same filesystem as objects, so moves are renames).

        The caller removes it; gc removes ones untouched for an hour (use :meth:`build_dir`
        for work that may stay silent longer).
        """
        if "/" in prefix or os.sep in prefix:
            raise StoreError(f"tmpdir prefix {prefix!r} must not contain a path separator")
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root / "tmp"))

    @contextmanager
    def build_dir(self, prefix: str) -> Iterator[Path]:
        """A :meth:`tmpdir` held busy while in use, then removed.

        A compiler may write nothing for hours; the flock on ``IN_USE`` inside the dir tells gc
        the dir is alive whatever its mtime, and dies with the process if it is killed.
        """
        from filelock import FileLock

        path = self.tmpdir(prefix)
        try:
            with FileLock(str(path / IN_USE)):
                yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def gc(
        self,
        *,
        dry_run: bool = False,
        max_size: int | None = None,
        grace: float = 3600.0,
    ) -> GcReport:
        """Remove unreferenced blobs, stale tmp/ and trees/ entries; evict LRU to ``max_size``.

        Blobs younger than ``grace`` seconds are kept even if unreferenced: they may belong to
        a build that has stored its files but not yet committed. See :mod:`artifact_store.gc`.
        """
        from artifact_store.gc import collect

        return collect(self, dry_run=dry_run, max_size=max_size, grace=grace)


# ---- the sqlite3 read path -------------------------------------------------------------------
# These mirror index.py's tables and UTCDateTime/JSON column types, and must return exactly what
# the SQLAlchemy path returns; tests/artifact_store/test_store.py compares the two.

_ARTIFACT_COLUMNS = (
    "key",
    "manifest_digest",
    "model",
    "target",
    "backend",
    "created_at",
    "last_used_at",
    "size",
    "metadata",
)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _open_reader(url: str) -> sqlite3.Connection | None:
    """A read-only sqlite3 connection to the index at ``url``, if the fast path applies.

    Only for a plain ``sqlite:///<path>`` URL (no driver, no query string, no %-escapes, which
    SQLAlchemy would interpret), whose file exists and is stamped with HEAD_REVISION. Anything
    else (fresh or old database, other dialects) returns None and goes through SQLAlchemy,
    which creates or migrates the schema.
    """
    prefix = "sqlite:///"
    path = url[len(prefix) :] if url.startswith(prefix) else ""
    if not path or path == ":memory:" or any(c in path for c in "?%#") or not os.path.isfile(path):
        return None
    try:
        # mode=ro: this connection never writes (and cannot create the file); under WAL it
        # still maps the -shm index, so it reads concurrently with writers, without blocking.
        # check_same_thread=False: the engine it stands in for was usable from any thread.
        conn = sqlite3.connect(
            Path(path).absolute().as_uri() + "?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error:
        return None
    try:
        # Same 30 s wait as the engine's connections (index.create_engine) when locked.
        conn.execute("PRAGMA busy_timeout = 30000")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no alembic_version yet, or not a database: SQLAlchemy decides
        row = None
    if row is None or row[0] != HEAD_REVISION:
        conn.close()
        return None
    return conn


def _get_fast(conn: sqlite3.Connection, key: str) -> ArtifactRecord | None:
    """:meth:`Store.get` through sqlite3; the same record the SQLAlchemy path builds."""
    cols = ", ".join(f"a.{c}" for c in _ARTIFACT_COLUMNS)
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
    r = dict(zip(_ARTIFACT_COLUMNS, rows[0], strict=False))
    n = len(_ARTIFACT_COLUMNS)
    return ArtifactRecord(
        key=r["key"],
        manifest_digest=r["manifest_digest"],
        model=r["model"],
        target=r["target"],
        backend=r["backend"],
        created_at=_utc_from_sqlite(r["created_at"]),
        last_used_at=_utc_from_sqlite(r["last_used_at"]),
        size=r["size"],
        # sa.JSON stores json.dumps text in SQLite and decodes it with json.loads.
        metadata=json.loads(r["metadata"]),
        # Sorted in Python as _select's aliases are by ORDER BY: aliases are ASCII, so the two
        # orders agree (and uses are sorted in Python on both paths).
        aliases=tuple(sorted(row[n + 1] for row in rows if row[n] == "alias")),
        uses=tuple(sorted((row[n + 1], row[n + 2]) for row in rows if row[n] == "use")),
    )


def _utc_from_sqlite(value: str) -> datetime:
    """Decode a UTCDateTime column as index.UTCDateTime does.

    SQLAlchemy's SQLite DateTime stores naive UTC as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, which
    fromisoformat parses; the result is made aware UTC.
    """
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _walk_tree(top: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(posix relpath, real path)`` for every file under ``top``, symlinks followed.

    Raises StoreError for symlinks leaving ``top``, symlink cycles and special files.
    """
    real_top = os.path.realpath(top)
    stack: list[tuple[str, str, frozenset[str]]] = [(str(top), "", frozenset({real_top}))]
    while stack:
        dirpath, prefix, ancestors = stack.pop()
        with os.scandir(dirpath) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = prefix + e.name
            real = os.path.realpath(e.path)
            if e.is_symlink() and os.path.commonpath([real, real_top]) != real_top:
                raise StoreError(f"symlink {rel!r} in {top} points outside it, to {real}")
            if e.is_dir():
                if real in ancestors:
                    raise StoreError(f"symlink {rel!r} in {top} makes a cycle")
                stack.append((e.path, rel + "/", ancestors | {real}))
            elif e.is_file():
                yield rel, real
            elif e.is_symlink():
                raise StoreError(f"symlink {rel!r} in {top} is dangling")
            else:
                raise StoreError(f"{rel!r} in {top} is not a regular file or directory")


def _tree_complete(out: Path, manifest: Manifest) -> bool:
    if out.is_symlink() or not out.is_dir():
        return False
    for rel, entry in manifest.files.items():
        try:
            st = os.lstat(out / rel)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
    return True


def _remove_aside(path: Path) -> None:
    # Rename first so a concurrent reader never sees a half-deleted tree under the real name.
    aside = path.with_name(f".{path.name}.stale-{os.getpid()}-{id(path):x}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)
