"""The store: content-addressed blobs on disk plus an SQL index (the action cache).

Layout under ``root``::

    objects/ab/cdef…   immutable, read-only blobs (file contents and manifests)
    tmp/               scratch on the same filesystem (ingest temp files, build dirs)
    locks/             flock files: per key, per pinned key, the store-wide gc lock
    trees/<key>/       materialized artifacts (hardlinks to blobs)
    logs/              for callers' build logs (gc collects old ones)
    quarantine/        blobs found damaged, moved out of objects/ (see integrity.py)
    local.sqlite       this store's own facts, never in a shared index (see local.py)
    index.sqlite       the default index (any SQLAlchemy URL may replace it)

The class is assembled from mixins along the store's seams: :class:`~artifact_store.catalog.
Catalog` (index rows), :class:`~artifact_store.queries.Queries` (listing, resolution),
:class:`~artifact_store.failures.Failures` (failed builds),
:class:`~artifact_store.results.Results` (action results: a key's output without its files),
:class:`~artifact_store.integrity.Integrity` (checks, quarantine),
:class:`~artifact_store.statcache.Hashing` (file digests through the stat cache); the
fast read path is :mod:`artifact_store.reader`, trees are :mod:`artifact_store.trees`, locks
:mod:`artifact_store.locks`, gc :mod:`artifact_store.gc`.

Write order is what makes crashes harmless: blobs are durable before the manifest that
names them, and the manifest before the index row that names it. A crash at any point
leaves only unreferenced blobs, which :meth:`Store.gc` removes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_store import hashing, statcache
from artifact_store.blobs import Blobs
from artifact_store.catalog import Catalog
from artifact_store.errors import (
    ArtifactNotFound,
    DestinationExists,
    DiskFull,
    InvalidArgument,
    LockTimeout,
    StoreUnavailable,
    disk_full_as,
    is_disk_full,
)
from artifact_store.failures import Failures
from artifact_store.integrity import Integrity, Problem
from artifact_store.locks import GC_LOCK, IN_USE, FileLock
from artifact_store.names import MIN_PREFIX, check_key, safe_url, validate_alias
from artifact_store.queries import Queries
from artifact_store.reader import open_reader, sqlite_path
from artifact_store.records import FileEntry, GcReport, Manifest
from artifact_store.results import Results
from artifact_store.statcache import Hashing
from artifact_store.trees import lay_out, remove_aside, tree_complete, walk_tree

# sqlalchemy and artifact_store.index (which imports it) are imported inside the methods that
# need them, never at module level: see artifact_store.reader.
if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

# Public names that used to live here; kept importable from artifact_store.store.
__all__ = ["IN_USE", "MIN_PREFIX", "Pin", "Problem", "Store", "validate_alias"]


class Pin:
    """A shared hold on an artifact: gc neither evicts it nor removes its tree.

    Taken under the shared gc lock, so a pin cannot slip in between gc's check and its sweep.
    Best effort where the store cannot be written (a read-only filesystem): gc cannot run
    there either.
    """

    def __init__(self, root: Path, key: str) -> None:
        check_key(key)
        self.key = key
        self._lock = FileLock(root / "locks" / f"{key}.pin", shared=True)
        self._gc = FileLock(root / "locks" / GC_LOCK, shared=True)

    def acquire(self) -> Pin:
        try:
            with self._gc:
                self._lock.acquire()
        except OSError as exc:
            if not is_disk_full(exc) and not isinstance(exc, PermissionError) and exc.errno != 30:
                raise
        return self

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> Pin:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class Store(Catalog, Queries, Integrity, Failures, Results, Hashing):
    """A local artifact store; see the module docstring for the layout.

    One ``Store`` per process or thread is the intended use; open it with a context manager
    (or call :meth:`close`) to release database connections.

    ``read_only=True`` is for commands that only read (``ls``, ``show``, ``verify``, ``run``):
    the index is opened read-only when it is a SQLite file at the head revision, so they keep
    working on a full disk. Bookkeeping writes (last use, stat records) are then
    attempted, and skipped if the disk or index refuses them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        index_url: str | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.root: Path = Path(root).expanduser().absolute()
        self.index_url = index_url or f"sqlite:///{self.root / 'index.sqlite'}"
        self._blobs = Blobs(self.root / "objects", self.root / "tmp")
        self._sa_engine: Engine | None = None
        self._ro_engine: Engine | None = None
        # Fast path for reads (see artifact_store.reader); None means "use the engine".
        self._reader = open_reader(self.index_url)
        self.read_only = read_only and self._reader is not None
        if not self.read_only:
            try:
                for sub in ("objects", "tmp", "locks", "trees", "logs"):
                    (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if is_disk_full(exc):
                    raise StoreUnavailable(
                        f"cannot use {self.root} as a store: no space left to create it"
                    ) from None
                raise StoreUnavailable(
                    f"cannot use {self.root} as a store: {exc.strerror or exc}"
                ) from None
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
                    f"cannot open the index {safe_url(self.index_url)}: {exc}"
                ) from None
            try:
                with disk_full_as(self._index_where, what="opening the index"):
                    index.ensure_schema(engine, self.root / "locks" / "index-migrate.lock")
            except DiskFull:
                engine.dispose()
                raise
            except (sa.exc.SQLAlchemyError, ImportError) as exc:
                engine.dispose()
                raise StoreUnavailable(
                    f"cannot open the index {safe_url(self.index_url)}: {str(exc).splitlines()[0]}"
                ) from None
            except BaseException:
                engine.dispose()
                raise
            self._sa_engine = engine
        return self._sa_engine

    @property
    def _index_where(self) -> str:
        """The index's file (or password-less URL), for messages."""
        return sqlite_path(self.index_url) or safe_url(self.index_url)

    @property
    def _reads(self) -> Engine:
        """The engine for queries: read-only connections in ``read_only`` mode."""
        if not self.read_only:
            return self._engine
        if self._ro_engine is None:
            from artifact_store import index

            path = sqlite_path(self.index_url)
            assert path is not None  # read_only implies a fast-path (plain sqlite file) index
            self._ro_engine = index.create_readonly_engine(path)
        return self._ro_engine

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
        local = self.__dict__.get("_local_facts")
        if local is not None:
            local.close()
        for engine in (self._sa_engine, self._ro_engine):
            if engine is not None:
                engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        from artifact_store import index

        # SQLITE_FULL and ENOSPC from the index become DiskFull.
        with disk_full_as(self._index_where, what="writing the index"):
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
        with disk_full_as(self.root / "objects", what="storing", needed=_size_of(p)):
            if move:
                return self._blobs.move_file(p)[0]
            return self._copy_in([p])[0][0]

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` as a blob and return its digest."""
        with disk_full_as(self.root / "objects", what="storing", needed=len(data)):
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

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Every blob in ``objects/`` as ``(digest, path)`` (gc walks the layout itself)."""
        return self._blobs.iter_all()

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

    # ---- trees -----------------------------------------------------------------------------

    def put_tree(
        self, directory: str | os.PathLike[str], *, move: bool = False, fresh: bool = False
    ) -> Manifest:
        """Store every regular file under ``directory`` and its manifest; return the manifest.

        Paths are POSIX relpaths. A symlink is stored as the content it points to, and must
        point inside ``directory`` (UnsafeTree otherwise, before anything is stored). Empty
        directories are not recorded. With ``move=True`` files are renamed into the store
        and ``directory`` is left depleted; the caller removes it. With ``fresh=True`` (a
        forced rebuild) moved files replace blobs already stored under their digest, so a
        silently damaged copy cannot outlive the rebuild.
        """
        top = Path(directory).absolute()
        if not top.is_dir():
            raise InvalidArgument(f"{top} is not a directory")
        entries = list(walk_tree(top))
        # Files reached twice (through a symlink) are ingested once, by their real path, so
        # a move cannot pull a file out from under its second name.
        by_real: dict[str, list[str]] = {}
        modes: dict[str, int] = {}
        for rel, real in entries:
            by_real.setdefault(real, []).append(rel)
            modes[real] = 0o755 if os.stat(real).st_mode & 0o111 else 0o644
        reals = list(by_real)
        needed = sum(_size_of(Path(r)) or 0 for r in reals)
        with disk_full_as(self.root / "objects", what="storing", needed=needed):
            if move:
                results = [self._blobs.move_file(Path(r), replace=fresh) for r in reals]
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

    # ---- materialize -------------------------------------------------------------------------

    def materialize(self, key: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Lay out artifact ``key`` as a directory and return it (default ``trees/<key>``).

        Files are read-only hardlinks to blobs (copies across filesystems, and for
        executables, whose mode a shared blob inode cannot carry). The tree is built in a
        sibling temp dir and renamed into place, so readers see all of it or nothing, and
        concurrent callers are fine. An existing complete tree is reused; a user-given
        ``dest`` that exists and does not match is refused rather than overwritten. Holds the
        shared gc lock meanwhile, so gc cannot take blobs from under it.
        """
        record = self.get(key)
        if record is None:
            raise ArtifactNotFound(key)
        manifest = self.get_manifest(record.manifest_digest)
        managed = dest is None
        out = (self.root / "trees" / key) if dest is None else Path(dest).absolute()
        with self._gc_shared():
            if not tree_complete(out, manifest, self._blobs.path):
                # One layer-out at a time per destination, and a second look once the lock is
                # ours: without it a caller that saw no tree could take the one another caller
                # has just renamed into place for an incomplete one, and remove it while that
                # caller reads it.
                name = key if managed else "tree-" + hashing.hash_bytes(os.fsencode(out))[:16]
                with FileLock(self.root / "locks" / f"{name}.tree"):
                    if not tree_complete(out, manifest, self._blobs.path):
                        self._lay_out_anew(key, manifest, out, managed=managed)
        self._touch_quietly(key)
        return out

    def _lay_out_anew(self, key: str, manifest: Manifest, out: Path, *, managed: bool) -> None:
        if os.path.lexists(out):
            if managed:
                remove_aside(out)
            elif out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
                out.rmdir()
            else:
                raise DestinationExists(
                    f"{out} exists and is not artifact {key}; remove it or pick another dest"
                )
        with disk_full_as(out, what="laying out artifact files in"):
            lay_out(manifest, out, self._blobs.path)

    def _touch_quietly(self, key: str) -> None:
        # Last use is bookkeeping for gc's LRU: a read must not fail for it (full disk,
        # read-only index).
        try:
            self.touch(key)
        except (ArtifactNotFound, InvalidArgument):
            raise
        except DiskFull:
            pass
        except Exception as exc:
            if not (is_disk_full(exc) or self.read_only or isinstance(exc, StoreUnavailable)):
                raise

    # ---- locks, scratch, gc ------------------------------------------------------------------

    @contextmanager
    def lock(self, key: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the per-key build lock (flock; released by the kernel if the holder dies).

        ``timeout=None`` waits forever; otherwise LockTimeout after ``timeout`` seconds.
        """
        check_key(key)
        path = self.root / "locks" / f"{key}.lock"
        fl = FileLock(path)
        if not fl.acquire(timeout):
            raise LockTimeout(key, str(path), timeout)
        try:
            yield
        finally:
            fl.release()

    def pin(self, key: str) -> Pin:
        """A hold on artifact ``key`` that gc respects: use as ``with store.pin(key):``, or
        call ``.acquire()`` and later ``.release()`` (a loaded session holds one)."""
        return Pin(self.root, key)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the shared gc lock from a build's first ingested blob to its :meth:`commit`.

        gc cannot sweep in between, so a blob stored (or found already stored) for an
        artifact about to be committed is never collected from under it.
        """
        with self._gc_shared():
            yield

    def tmpdir(self, prefix: str) -> Path:
        """A fresh directory under ``tmp/`` (same filesystem as objects, so moves are renames).

        The caller removes it; gc removes ones untouched for an hour (use :meth:`build_dir`
        for work that may stay silent longer).
        """
        if "/" in prefix or os.sep in prefix:
            raise InvalidArgument(f"tmpdir prefix {prefix!r} must not contain a path separator")
        with disk_full_as(self.root / "tmp", what="creating a directory in"):
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root / "tmp"))

    @contextmanager
    def build_dir(self, prefix: str) -> Iterator[Path]:
        """A :meth:`tmpdir` held busy while in use, then removed.

        A compiler may write nothing for hours; the flock on ``IN_USE`` inside the dir tells gc
        the dir is alive whatever its mtime, and dies with the process if it is killed.
        """
        path = self.tmpdir(prefix)
        try:
            with FileLock(path / IN_USE):
                yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def gc(
        self,
        *,
        dry_run: bool = False,
        max_size: int | None = None,
        grace: float = 3600.0,
        log_retention: float | None = None,
        on_snapshot: Callable[[Any], None] | None = None,
    ) -> GcReport:
        """Remove unreferenced blobs, stale tmp/, trees/, logs/, locks and stat rows; evict
        least-recently-used artifacts down to ``max_size``. See :mod:`artifact_store.gc`.

        Blobs younger than ``grace`` seconds are kept even if unreferenced: they may belong to
        a build that stores its files without :meth:`writing`. ``log_retention`` (seconds;
        default 14 days) is how long failed builds' logs are kept.
        """
        from artifact_store import gc

        return gc.collect(
            self,
            dry_run=dry_run,
            max_size=max_size,
            grace=grace,
            log_retention=gc.LOG_RETENTION if log_retention is None else log_retention,
            on_snapshot=on_snapshot,
        )


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
