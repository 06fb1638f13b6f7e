"""Errors raised by :mod:`artifact_store`.

Every error derives from :class:`StoreError`, so a CLI can map the whole family to one exit
code; each message is one line that says what went wrong and, where there is one, what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from artifact_store.records import ArtifactRecord


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


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
        super().__init__(f"object {digest}: {problem} (run verify, then gc, and rebuild)")


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
