"""The store's file locks: flock, so the kernel drops a lock when its holder dies.

``locks/<key>.lock``
    exclusive: the per-key build lock (two builders of one key run the tool once).
``locks/<key>.pin``
    shared, held while a build reads the key's tree as its input or ``run`` serves it; gc
    neither evicts a pinned artifact nor removes its tree.
``locks/<key>.tree``
    exclusive while one caller lays out ``trees/<key>`` (``tree-<hash>.tree`` for a tree laid
    out elsewhere), so two callers never take each other's fresh tree for a stale one.
``locks/gc.lock``
    store-wide. Shared by everything that makes blobs live or lays them out: the window from
    a build's first ingested blob to its index row (:meth:`Store.writing`), :meth:`Store.commit`
    itself, :meth:`Store.materialize`, and taking a pin. Exclusive for gc's whole snapshot and
    sweep, so nothing can become live between gc deciding "garbage" and deleting it.
``tmp/<dir>/.in-use``
    exclusive while a build dir is alive (a compiler may write nothing for hours).

Lock files of keys are deleted by gc. A process may open such a file just before
gc unlinks it and then lock a dead inode; :meth:`FileLock.acquire` therefore re-checks, once it
holds the lock, that the path still names the inode it locked, and starts over if not.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

GC_LOCK = "gc.lock"
IN_USE = ".in-use"
# Lock files that are not per key and that gc must never collect.
FIXED_LOCKS = frozenset({GC_LOCK, "index-migrate.lock"})
_POLL_S = 0.05


def _notify_wait(path: str) -> None:
    """Called once when an acquire has to wait for another holder.

    Does nothing; it is the seam through which tests interleave a gc with a commit
    deterministically (they replace it to learn that a thread is now blocked).
    """


class FileLock:
    """One flock on ``path`` (created if absent), shared or exclusive; not reentrant."""

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False) -> None:
        self.path = os.fspath(path)
        self.shared = shared
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock; False if ``timeout`` seconds passed first (0: try once).

        ``None`` waits as long as it takes.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = None if timeout is None else time.monotonic() + timeout
        notified = False
        while True:
            # Read-only: flock needs no write access, so an existing lock file can be taken
            # on a store mounted read-only (a serving host), where O_RDWR fails with EROFS.
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                try:
                    fcntl.flock(fd, op | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not notified:
                        _notify_wait(self.path)
                        notified = True
                    if deadline is None:
                        fcntl.flock(fd, op)  # block in the kernel: no polling latency
                    elif time.monotonic() >= deadline:
                        os.close(fd)
                        return False
                    else:
                        os.close(fd)
                        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
                        continue
                if _same_file(fd, self.path):
                    self._fd = fd
                    return True
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # gc unlinked it meanwhile: lock the file that is there now

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)


def is_held(path: str | os.PathLike[str]) -> bool:
    """Does any process hold a lock (shared or exclusive) on ``path``? False if absent."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_if_unheld(path: Path) -> bool:
    """Delete lock file ``path`` if no process holds it; True if it was deleted.

    The file is unlinked while we hold it exclusively, so a process that opened it just before
    finds, once it gets the lock, that the path is gone and retries on a new file.
    """
    lock = FileLock(path)
    try:
        if not lock.acquire(timeout=0):
            return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
            return False
        raise
    try:
        path.unlink(missing_ok=True)
    finally:
        lock.release()
    return True
