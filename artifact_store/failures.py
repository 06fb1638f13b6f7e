"""Failed builds as data: the last failure of each key, a mixin of the store.

A failed build writes no artifact (so it is never a hit), but it is recorded: key, what it
built (model, target, backend, profile), a digest of the toolchain that ran, the tool's exit
code, its log (path and digest) and when. ``rmbuild ls --failed`` shows them; the next request
of the key runs the tool again, and a success deletes the record (in :meth:`Catalog.commit`'s
transaction). A caller may instead skip a key that already failed with the same toolchain
(``compile --no-retry-failed``). Recording is best effort: it must never hide the tool's error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from artifact_store import hashing
from artifact_store.names import check_key

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class FailureRecord:
    """The last failed build of a key."""

    key: str
    model: str
    target: str
    backend: str
    profile: str
    toolchain: str  # a digest of the tool and toolchain identity that failed
    exit_code: int | None
    message: str
    log_path: str | None
    log_digest: str | None
    attempts: int
    failed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``ls --failed --json``)."""
        out = dict(self.__dict__)
        out["failed_at"] = self.failed_at.isoformat()
        return out


class Failures:
    """Failure records of :class:`~artifact_store.store.Store` (see the module docstring)."""

    if TYPE_CHECKING:

        @property
        def _reads(self) -> Engine: ...
        def _try_write(self, fn: Any) -> bool: ...

    def record_failure(
        self,
        key: str,
        *,
        model: str,
        target: str,
        backend: str,
        profile: str,
        toolchain: str,
        message: str,
        exit_code: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> bool:
        """Record that building ``key`` failed (replacing its earlier record, counting the
        attempts). Best effort: False where the index cannot be written now."""
        check_key(key)
        from artifact_store import index
        from artifact_store.catalog import utcnow

        log = os.fspath(log_path) if log_path is not None else None
        try:
            log_digest = hashing.hash_path(log) if log is not None else None
        except OSError:
            log_digest = None
        f = index.build_failures
        row = {
            "key": key,
            "model": model,
            "target": target,
            "backend": backend,
            "profile": profile,
            "toolchain": toolchain[:64],
            "exit_code": exit_code,
            "message": message[:4000],
            "log_path": log,
            "log_digest": log_digest,
            "attempts": 1,
            "failed_at": utcnow(),
        }
        update: dict[str, Any] = {c: (lambda ex, c=c: ex[c]) for c in row if c != "key"}
        update["attempts"] = f.c.attempts + 1
        return self._try_write(lambda conn: index.upsert(conn, f, [row], update))

    def get_failure(self, key: str) -> FailureRecord | None:
        """The recorded failure of ``key``, or None (never built, or built since)."""
        from artifact_store import index

        found = self._failures(index.build_failures.c.key == key)
        return found[0] if found else None

    def list_failures(
        self,
        *,
        model: str | None = None,
        target: str | None = None,
        backend: str | None = None,
        limit: int | None = None,
    ) -> list[FailureRecord]:
        """Recorded failures matching every given filter, newest first."""
        from artifact_store import index

        f = index.build_failures
        pairs = ((f.c.model, model), (f.c.target, target), (f.c.backend, backend))
        return self._failures(*[col == v for col, v in pairs if v is not None], limit=limit)

    def clear_failure(self, key: str) -> bool:
        """Forget ``key``'s failure record; best effort."""
        from artifact_store import index

        f = index.build_failures
        return self._try_write(lambda conn: conn.execute(f.delete().where(f.c.key == key)))

    def _failures(self, *where: Any, limit: int | None = None) -> list[FailureRecord]:
        import sqlalchemy as sa

        from artifact_store import index

        f = index.build_failures
        q = sa.select(f).where(*where).order_by(f.c.failed_at.desc(), f.c.key)
        if limit is not None:
            q = q.limit(limit)
        with self._reads.connect() as conn:
            return [FailureRecord(**dict(r)) for r in conn.execute(q).mappings()]
