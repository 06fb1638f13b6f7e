"""Action results: what a key produced, without its bytes (Bazel's "build without the bytes").

A downstream stage's key is computed from its upstream's output *manifest digest*, never from
its files. So to find a final artifact a store needs, for every upstream stage, only the small
record ``key -> manifest digest`` (and the keys it was built from): its action result. This
module keeps them:

* in the index, table ``action_results`` (:class:`Results`, mixed into the store): written when
  a stage is built or pulled, and kept when the artifact row is evicted; a key without one
  falls back to its artifact row, which says the same;
* on a remote, ``entries/<key>.json`` already is the result of a key whose files were pushed;
  ``results/<key>.json`` (:func:`push_results`) records one whose files the pushing store does
  not hold (it pulled only the final artifact);
* :func:`pull_chain` brings the chain's results along with a pulled artifact, never its
  upstream stages' files.

A result is as trusted as the remote entry that names the same manifest: a pull verifies every
blob against its digest, and a result only ever names a digest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from artifact_store.errors import RemoteCorrupt
from artifact_store.hashing import is_digest
from artifact_store.names import NAME_RE, check_key
from artifact_store.records import canonical_json

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy.engine import Engine

    from artifact_store.entries import RemoteEntry
    from artifact_store.remote import Remote
    from artifact_store.store import Store

RESULT_VERSION = 1
# A chain is at most this long (rmbuild plans at most 16 stages); a longer walk is a loop.
MAX_CHAIN = 64


@dataclass(frozen=True)
class ActionResult:
    """One key's output: its manifest digest, and the keys of the stages it was built from."""

    key: str
    manifest_digest: str
    parents: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "version": RESULT_VERSION,
                "key": self.key,
                "manifest_digest": self.manifest_digest,
                "parents": list(self.parents),
            }
        )

    @classmethod
    def from_json(cls, data: bytes, remote: str, key: str) -> ActionResult:
        """Parse ``results/<key>.json``; RemoteCorrupt if it is not one, or names another key."""
        try:
            doc = json.loads(data)
            if doc.get("version") != RESULT_VERSION:
                raise ValueError(f"result version {doc.get('version')!r}")
            result = cls(str(doc["key"]), str(doc["manifest_digest"]), _parents(doc["parents"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RemoteCorrupt(remote, f"result {key[:12]} is not valid ({exc})") from None
        if result.key != key or not is_digest(result.manifest_digest):
            raise RemoteCorrupt(remote, f"result {key[:12]} names another key or a bad digest")
        return result

    @classmethod
    def of_entry(cls, entry: RemoteEntry) -> ActionResult:
        """The result a remote entry (an artifact pushed with its files) records."""
        return cls(entry.key, entry.manifest_digest, _parents(entry.metadata.get("parents")))


def _parents(value: Any) -> tuple[str, ...]:
    """The valid keys of a ``parents`` list (anything else in it is ignored)."""
    if not isinstance(value, list):
        return ()
    return tuple(p for p in value if isinstance(p, str) and NAME_RE.fullmatch(p))


def upstream_of(metadata: dict[str, Any]) -> ActionResult | None:
    """The direct upstream's result as an artifact's own metadata records it: the parent's key
    and the manifest digest its action key was computed from (``action_key.inputs.model``).
    None when the metadata does not say (a first stage, or an artifact not built by rmbuild)."""
    parents = _parents(metadata.get("parents"))
    inputs = (metadata.get("action_key") or {}).get("inputs")
    digest = inputs.get("model") if isinstance(inputs, dict) else None
    if len(parents) != 1 or not isinstance(digest, str) or not is_digest(digest):
        return None
    return ActionResult(parents[0], digest)


# ----------------------------------------------------------------------------- the index


class Results:
    """Action-result operations of :class:`~artifact_store.store.Store` (a mixin)."""

    _reader: sqlite3.Connection | None

    if TYPE_CHECKING:

        @property
        def _reads(self) -> Engine: ...
        def _write(self) -> Any: ...

    def result(self, key: str) -> ActionResult | None:
        """What ``key`` produced (its manifest digest and parents), whether or not this store
        holds its files; None if no result is recorded. A read: no SQLAlchemy on a plain SQLite
        index."""
        check_key(key)
        if self._reader is not None:
            row = self._reader.execute(
                "SELECT manifest_digest, parents FROM action_results WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                row = self._reader.execute(
                    "SELECT manifest_digest, metadata FROM artifacts WHERE key = ?", (key,)
                ).fetchone()
                if row is not None:
                    row = (row[0], json.loads(row[1] or "{}").get("parents"))
            else:
                row = (row[0], json.loads(row[1] or "[]"))
        else:
            import sqlalchemy as sa

            from artifact_store import index

            r, a = index.action_results, index.artifacts
            with self._reads.connect() as conn:
                row = conn.execute(
                    sa.select(r.c.manifest_digest, r.c.parents).where(r.c.key == key)
                ).first()
                if row is None:
                    row = conn.execute(
                        sa.select(a.c.manifest_digest, a.c.metadata).where(a.c.key == key)
                    ).first()
                    if row is not None:
                        row = (row[0], (row[1] or {}).get("parents"))
        if row is None:
            return None
        return ActionResult(key, row[0], _parents(row[1]))

    def record_results(self, results: Iterable[ActionResult], *, replace: bool = False) -> int:
        """Record ``results``; how many rows were written.

        The first result recorded for a key wins, as the artifact row's first writer does (a
        tool whose output differs from run to run gives one key several outputs; every store
        then resolves the downstream keys alike). ``replace`` (a forced rebuild) re-points it.
        """
        from artifact_store import index

        now = datetime.now(UTC)
        rows = []
        for result in {r.key: r for r in results}.values():
            check_key(result.key)
            if not is_digest(result.manifest_digest):
                raise ValueError(f"result of {result.key} has a malformed manifest digest")
            rows.append(
                {
                    "key": result.key,
                    "manifest_digest": result.manifest_digest,
                    "parents": list(result.parents),
                    "created_at": now,
                }
            )
        if not rows:
            return 0
        rows.sort(key=lambda row: row["key"])  # one order for every writer: no deadlocks
        with self._write() as conn:
            if replace:
                index.upsert(conn, index.action_results, rows)
                return len(rows)
            return index.insert_ignoring(conn, index.action_results, rows)


# ----------------------------------------------------------------------------- a remote


def result_path(remote: Remote, key: str) -> str:
    return remote._path("results", f"{key}.json")


def remote_result(remote: Remote, key: str) -> ActionResult | None:
    """``key``'s result on ``remote``: from its entry (files pushed) or its ``results/`` record
    (pushed by a store that held only a downstream artifact); None if it has neither."""
    entry = remote.get(key)
    return ActionResult.of_entry(entry) if entry is not None else _result_file(remote, key)


def _result_file(remote: Remote, key: str) -> ActionResult | None:
    check_key(key)
    own = getattr(remote, "read_result", None)
    if own is not None:  # a remote with a layout of its own (an OCI registry) reads its own
        return own(key)
    with remote._errors(f"reading result {key[:12]}"):
        try:
            data = remote.fs.cat_file(result_path(remote, key))
        except FileNotFoundError:
            return None
    return ActionResult.from_json(data, remote.display, key)


def chain_results(store: Store, key: str) -> list[ActionResult]:
    """The results of ``key``'s upstream stages that ``store`` records, nearest first."""
    out: list[ActionResult] = []
    seen = {key}
    own = store.result(key)
    stack = list(own.parents) if own else []
    while stack and len(seen) < MAX_CHAIN:
        parent = stack.pop()
        if parent in seen:
            continue
        seen.add(parent)
        result = store.result(parent)
        if result is not None:
            out.append(result)
            stack += result.parents
    return out


def push_results(remote: Remote, store: Store, keys: Iterable[str]) -> int:
    """Write ``results/<key>.json`` for the upstream stages of ``keys`` whose files ``store``
    lacks, where the remote has neither an entry nor a result: a host that pulled only a final
    artifact and pushes it elsewhere passes its chain on. Returns how many were written."""
    written = 0
    seen: set[str] = set()
    for key in keys:
        for result in chain_results(store, key):
            if result.key in seen or store.get(result.key) is not None:
                continue  # its files are here: push() sends its entry, which says the same
            seen.add(result.key)
            if remote_result(remote, result.key) is None:
                own = getattr(remote, "write_result", None)
                if own is not None:  # a remote with a layout of its own (an OCI registry)
                    own(result)
                else:
                    with remote._errors(f"writing result {result.key[:12]}"):
                        remote._put_bytes(result_path(remote, result.key), result.to_json())
                written += 1
    return written


def pull_chain(remote: Remote, store: Store, entry: RemoteEntry) -> list[ActionResult]:
    """After ``entry``'s artifact was pulled: record its result and its upstream stages'
    (from the remote's entries or results, else from the downstream's own metadata), never
    their files. Walks until a result this store already records. Returns what was new."""
    new: list[ActionResult] = []
    mine = ActionResult.of_entry(entry)
    store.record_results([mine])
    todo: list[tuple[str, dict[str, Any]]] = [(p, entry.metadata) for p in mine.parents]
    seen = {entry.key}
    while todo and len(seen) < MAX_CHAIN:
        key, child_metadata = todo.pop()
        if key in seen or store.result(key) is not None:
            continue
        seen.add(key)
        full = remote.get(key)
        result: ActionResult | None
        if full is not None:
            result, metadata = ActionResult.of_entry(full), full.metadata
        else:
            try:
                result, metadata = _result_file(remote, key), {}
            except RemoteCorrupt:  # a damaged record: the downstream's metadata still says it
                result, metadata = None, {}
        if result is None:
            # Neither on the remote: the downstream's metadata names the digest its key was
            # computed from, which is all its key needs (the walk ends here).
            derived = upstream_of(child_metadata)
            result = derived if derived is not None and derived.key == key else None
        if result is None:
            continue
        new.append(result)
        todo += [(p, metadata) for p in result.parents]
    if new:
        store.record_results(new)
    return new
