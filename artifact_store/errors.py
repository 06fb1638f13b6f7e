"""Errors raised by :mod:`artifact_store`.

Every error derives from :class:`StoreError`, so a CLI can map the whole family to one exit
code; each message is one line that says what went wrong and, where there is one, what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from artifact_store.records import ArtifactRecord


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take their own arguments, which default exception pickling loses; an
        # error raised in a worker process (`compile -j`) must reach the parent intact.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(
    cls: type[StoreError], args: tuple[object, ...], state: dict[str, object]
) -> StoreError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ArtifactNotFound(StoreError):
    """No artifact (or alias) matches ``ref``."""

    def __init__(self, ref: str, reason: str | None = None) -> None:
        self.ref = ref
        msg = f"no artifact matches {ref!r}"
        if reason:
            msg += f": {reason}"
        else:
            msg += " (give a full key, an alias, or a hex prefix of at least 4 characters)"
        super().__init__(msg)


class AmbiguousRef(StoreError):
    """A hex prefix matches more than one artifact; ``candidates`` lists them."""

    def __init__(self, ref: str, candidates: Sequence[ArtifactRecord]) -> None:
        self.ref = ref
        self.candidates = list(candidates)
        shown = ", ".join(c.key[:12] for c in self.candidates[:5])
        more = f" and {len(self.candidates) - 5} more" if len(self.candidates) > 5 else ""
        super().__init__(
            f"prefix {ref!r} matches {len(self.candidates)} artifacts ({shown}{more}); "
            "give more characters"
        )


class CorruptObject(StoreError):
    """A blob is missing, or its content does not hash to its name."""

    def __init__(self, digest: str, problem: str) -> None:
        self.digest = digest
        super().__init__(f"object {digest}: {problem}")


class CorruptManifest(StoreError):
    """A manifest cannot be parsed, or names a path that would escape its tree."""

    def __init__(self, digest: str | None, problem: str) -> None:
        self.digest = digest
        where = f"manifest {digest}" if digest else "manifest"
        super().__init__(f"{where}: {problem}")


class LockTimeout(StoreError):
    """Another process held the lock for longer than the timeout."""

    def __init__(self, key: str, path: str, timeout: float | None) -> None:
        self.key = key
        self.path = path
        super().__init__(
            f"lock for {key!r} still held by another process after {timeout}s ({path}); "
            "wait for that build to finish or raise the timeout"
        )


class InvalidAlias(StoreError):
    """An alias name that the store refuses (see :func:`artifact_store.store.validate_alias`)."""

    def __init__(self, alias: str, problem: str) -> None:
        self.alias = alias
        super().__init__(f"invalid alias {alias!r}: {problem}")


class StoreUnavailable(StoreError):
    """The store folder or its index cannot be opened (bad path, bad URL, missing driver)."""


class IndexUnreachable(StoreUnavailable):
    """The index's server stopped answering (stopped, restarting, the network cut).

    Raised in place of the driver's error for a lost or refused connection, so that a caller
    sees "index unavailable" rather than a database exception. :meth:`Store.commit` retries
    for a bounded time before letting it through: a server restarted meanwhile loses nothing.
    """


# ---- precise classes: each says whose fault it is, so a caller can map it --------


class InvalidArgument(StoreError):
    """The caller misused the API (a malformed key or digest, bad metadata): a bug upstream."""


class DestinationExists(InvalidArgument):
    """``materialize(dest=...)`` was given a path that holds something else."""


class UnsafeTree(StoreError):
    """``put_tree`` refused a directory: a symlink leaving it, a dangling link, a cycle, a
    special file. For rmbuild the directory is a tool's output, so this is the tool's fault.
    """

    def __init__(self, top: str, rel: str, problem: str) -> None:
        self.top = top
        self.rel = rel
        self.problem = problem
        super().__init__(f"{rel!r} in {top} {problem}")


class DiskFull(StoreError):
    """No space left (ENOSPC/EDQUOT) while writing under ``path``.

    ``needed`` is the number of bytes the write wanted where known, ``free`` what the
    filesystem had left when the error was raised.
    """

    def __init__(self, path: str, *, needed: int | None = None, what: str = "writing") -> None:
        import shutil
        from pathlib import Path

        self.path = path
        self.needed = needed
        self.free: int | None = None
        probe = Path(path)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            self.free = shutil.disk_usage(probe).free
        except OSError:
            pass
        super().__init__(f"no space left on the device while {what} {path}")


class ArtifactCorrupt(StoreError):
    """An artifact's content is damaged: ``problems`` says which blob of which file.

    Raised where corrupt content would otherwise be served; the damaged blobs have been moved
    to ``quarantine/`` and the artifact marked corrupt, so the next build of its key rebuilds.
    """

    def __init__(self, key: str, problems: Sequence[object]) -> None:
        self.key = key
        self.problems = [str(p) for p in problems]
        super().__init__(f"artifact {key[:12]} is corrupt: {'; '.join(self.problems)}")


def is_disk_full(exc: BaseException, where: object = None) -> bool:
    """True for a full disk or exhausted quota: an OSError, or SQLite's SQLITE_FULL.

    SQLite reports a -shm or -wal file it could not create or grow as a generic "disk I/O
    error"; given ``where`` (a path on the index's disk), that counts as full when the disk
    has (almost) nothing left.
    """
    import errno
    import shutil
    import sqlite3

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    orig = getattr(exc, "orig", exc)  # SQLAlchemy wraps the driver's error in .orig
    if not isinstance(orig, sqlite3.Error):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code == 13 or "disk is full" in str(orig):
        return True
    if where is not None and (code is not None and code & 0xFF == 10 or "disk I/O" in str(orig)):
        try:
            return shutil.disk_usage(_existing(where)).free < 1 << 20
        except OSError:
            return False
    return False


def _existing(where: object) -> str:
    import os

    path = str(where)
    if path.startswith("sqlite:///"):
        path = path[len("sqlite:///") :]
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return path or "."


@contextlib.contextmanager
def disk_full_as(
    path: object, *, needed: int | None = None, what: str = "writing"
) -> Iterator[None]:
    """Turn a full-disk error raised inside into :class:`DiskFull` naming ``path``."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc, path):
            raise DiskFull(str(path), needed=needed, what=what) from exc
        raise


# ---- remotes ------------------------------------------------------------------------


class RemoteError(StoreError):
    """A remote cache (an fsspec URL) failed: unreachable, refused, or missing a bucket.

    ``remote`` is the URL without credentials or query (see :func:`artifact_store.remote.
    redact_url`); the message never carries a secret.
    """

    def __init__(self, remote: str, problem: str) -> None:
        self.remote = remote
        self.problem = problem
        super().__init__(f"remote {remote}: {problem}")


class RemoteAuthError(RemoteError):
    """The remote refused the credentials (wrong key, expired token, access denied)."""


class RemoteCorrupt(RemoteError):
    """Something read from the remote does not match its digest or is not a valid entry;
    nothing of it entered the local store."""
