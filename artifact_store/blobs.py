"""Content-addressed blobs under ``objects/ab/cdef…``.

A blob appears under its final name only once its bytes are on disk: it is written to a temp
file on the same filesystem, fsynced, made read-only and then renamed into place. Rename is
atomic, so a reader sees either no blob or a whole one, and two writers of the same content
both succeed (the second rename replaces identical bytes).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from artifact_store.errors import CorruptObject, InvalidArgument
from artifact_store.hashing import (
    _advise_sequential,
    hash_bytes,
    hash_fileobj,
    hash_path,
    is_digest,
)

BLOB_MODE = 0o444


class Blobs:
    """The ``objects/`` directory; ``tmp`` must be on the same filesystem."""

    def __init__(self, objects: Path, tmp: Path) -> None:
        self.objects = objects
        self.tmp = tmp

    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise InvalidArgument(f"{digest!r} is not a SHA-256 hex digest")
        return self.objects / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    # A blob already stored is left as it is, mtime included: its (inode, mtime_ns, size) is
    # what the integrity check compares. A build that re-uses one is protected
    # from a concurrent gc by the store's gc lock (Store.writing), not by a fresh mtime.

    def _install(self, tmp_path: str, digest: str) -> None:
        final = self.path(digest)
        if final.exists():
            os.unlink(tmp_path)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, final)
        _fsync_dir(final.parent)

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.exists(digest):
            return digest
        fd, tmp_path = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp_path, BLOB_MODE)
            self._install(tmp_path, digest)
        except BaseException:
            _unlink_quietly(tmp_path)
            raise
        return digest

    def put_file(self, src: Path, *, known: tuple[str, int] | None = None) -> tuple[str, int]:
        """Copy ``src`` in, hashing while copying; returns ``(digest, size)``.

        ``known`` is a ``(digest, size)`` from the stat cache: if that blob is stored already
        the file is not read at all.
        """
        if known is not None and self.exists(known[0]):
            return known
        fd, tmp_path = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
        try:
            with open(src, "rb", buffering=0) as fin, os.fdopen(fd, "wb", buffering=0) as fout:
                _advise_sequential(fin.fileno())
                digest, size = hash_fileobj(fin, fout)
                os.fsync(fout.fileno())
            os.chmod(tmp_path, BLOB_MODE)
            self._install(tmp_path, digest)
        except BaseException:
            _unlink_quietly(tmp_path)
            raise
        return digest, size

    def move_file(self, src: Path, *, replace: bool = False) -> tuple[str, int]:
        """Ingest ``src`` by renaming it into the store (same filesystem); copy otherwise.

        With ``replace``, ``src`` (just hashed) takes the place of a blob already stored under
        its digest: a forced rebuild's way to get rid of a damaged copy that no cheap check
        could see. The source path is consumed when the rename happens. Renaming rather than
        hardlinking matters: a hardlink would leave a writable name for the blob's inode
        behind, and a later in-place write through it would corrupt the store.
        """
        st = os.lstat(src)
        if not stat.S_ISREG(st.st_mode):
            return self.put_file(src)  # symlinks are ingested by content
        with open(src, "rb", buffering=0) as f:
            _advise_sequential(f.fileno())
            digest, size = hash_fileobj(f)
            # Build outputs may still sit in the page cache; the blob must be durable before
            # the index row that points at it is written.
            os.fsync(f.fileno())
        final = self.path(digest)
        if final.exists() and not replace:
            return digest, size
        try:
            os.chmod(src, BLOB_MODE)
            now = time.time()
            os.utime(src, (now, now))  # gc's grace period counts from ingestion
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, final)
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.EPERM, errno.EACCES):
                return self.put_file(src)
            raise
        _fsync_dir(final.parent)
        return digest, size

    def read_bytes(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise CorruptObject(digest, "missing") from None
        if hash_bytes(data) != digest:
            raise CorruptObject(digest, "content does not match its digest")
        return data

    def verify(self, digest: str) -> bool:
        try:
            return hash_path(self.path(digest)) == digest
        except FileNotFoundError:
            return False

    def iter_all(self) -> Iterator[tuple[str, Path]]:
        """Every blob in the store as ``(digest, path)``; skips anything not named like one."""
        try:
            fanouts = list(os.scandir(self.objects))
        except FileNotFoundError:
            return
        for d in fanouts:
            if len(d.name) != 2 or not d.is_dir(follow_symlinks=False):
                continue
            for f in os.scandir(d.path):
                digest = d.name + f.name
                if is_digest(digest):
                    yield digest, Path(f.path)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not supported (nor needed) on every platform.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
