"""Integrity of stored artifacts: the cheap check, the full re-hash, quarantine.

The cheap check runs on every cache hit and every load. Blobs are read-only and never
rewritten in place, so each blob's (inode, mtime_ns, size) as recorded when it became part of
an artifact must still hold; only a blob whose stat moved is re-hashed. What it catches: a
blob deleted, truncated, grown, replaced by another file, or written in place (which moves its
mtime). What it cannot catch: a same-size rewrite whose mtime was put back (``os.utime``), or
bit rot beneath the filesystem; only a full re-hash sees those (``verify``, ``run --verify``).

A blob found damaged is moved to ``quarantine/`` (out of ``objects/``, so nothing links it
again and a rebuild stores fresh bytes under its name), and every artifact that references it
is marked corrupt, so it is never a cache hit again: the next build of its key rebuilds it.

All of this is a fact of this store's disk, recorded in the store (:mod:`artifact_store.local`),
never in the index, which other stores may share: a blob damaged or missing here says nothing
of another store's copy. An artifact whose output this store never held (another store built
it; the index is shared) is neither damaged nor repaired: :meth:`Integrity.check` answers with
one ``absent`` problem, and a build pulls or builds its own copy.
"""

from __future__ import annotations

import builtins
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_store import hashing
from artifact_store.errors import ArtifactNotFound, CorruptManifest, CorruptObject
from artifact_store.records import ArtifactRecord, Manifest
from artifact_store.trees import remove_aside

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sqlalchemy.engine import Connection

    from artifact_store.blobs import Blobs
    from artifact_store.local import BlobStat, LocalFacts
    from artifact_store.reader import GcRow


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an artifact: which part (``what``), which blob, what is wrong.

    ``absent``: not damage, but an artifact whose output this store never held (the index
    is shared and another store built it); it is pulled or built here, never repaired.
    """

    what: str  # "file 'model.bin'", "manifest", "metadata blob", "artifact"
    detail: str
    digest: str | None = None
    path: str | None = None  # the file's relative path in the artifact, where it is one
    absent: bool = False

    def __str__(self) -> str:
        blob = f"blob {self.digest} " if self.digest else ""
        return f"{self.what}: {blob}{self.detail}"


@dataclass(frozen=True)
class _Part:
    what: str
    digest: str
    size: int | None = None  # from the manifest, for files
    path: str | None = None
    # A metadata blob (the build's log) is not needed to serve the artifact: where this store
    # never had it (another store's build, same output) its absence is no damage.
    optional: bool = False


NOT_HERE = (
    "is not in this store: the index has it from another store sharing it (pull it from a "
    "remote, or build it here)"
)


class Integrity:
    """Checks of :class:`~artifact_store.store.Store` (a mixin; see the module docstring)."""

    root: Path
    _blobs: Blobs

    if TYPE_CHECKING:

        @property
        def _local(self) -> LocalFacts: ...
        def get(self, key: str) -> ArtifactRecord | None: ...
        def _own(self, record: ArtifactRecord) -> ArtifactRecord: ...
        def gc_index(
            self, only: Iterable[str] | None = None
        ) -> tuple[builtins.list[GcRow], dict[str, builtins.list[tuple[str, int]]]]: ...
        def get_manifest(self, digest: str) -> Manifest: ...
        def _try_write(self, fn: Any) -> bool: ...

    # ---- this store's records (see artifact_store.local) -----------------------------------

    def blob_stats(self, digests: builtins.list[str]) -> dict[str, BlobStat]:
        """Recorded (inode, mtime_ns, size) of ``digests`` in this store (unrecorded: absent)."""
        return self._local.blob_stats(digests)

    def record_blob_stats(self, stats: dict[str, BlobStat]) -> bool:
        """Record blob stats (best effort: False where the store cannot be written now)."""
        local = self._local
        return local.try_write(lambda c: local.put_stats(c, stats)) if stats else True

    def forget_blob_stats(self, digests: builtins.list[str]) -> bool:
        """Drop the stat records of ``digests`` (quarantined or collected blobs); best effort."""
        local = self._local
        return local.try_write(lambda c: local.forget_stats(c, digests)) if digests else True

    def mark_corrupt(self, problems: dict[str, str]) -> bool:
        """Mark this store's copies of artifacts (key -> why) corrupt: never a hit here again
        until rebuilt here; best effort. The index, which other stores may share, is not
        touched: their copies are theirs to check."""
        local = self._local
        return local.try_write(lambda c: local.mark(c, problems)) if problems else True

    def clear_corrupt(self, key: str) -> bool:
        """Mark this store's copy of ``key`` healthy again (a full re-hash found it whole);
        best effort. Also clears a mark an older rmbuild wrote on the index row itself."""
        from artifact_store import index

        local = self._local
        done = local.try_write(lambda c: local.unmark(c, key))
        t = index.artifacts

        def clear(conn: Connection) -> None:
            conn.execute(
                t.update().where(t.c.key == key, t.c.state != "ok").values(state="ok", problem=None)
            )

        return self._try_write(clear) and done

    def _stats_for_commit(self, digests: builtins.list[str]) -> dict[str, BlobStat]:
        """Current stats of ``digests``; a recorded blob whose stat moved is re-hashed first."""
        unique = list(dict.fromkeys(digests))
        recorded = self.blob_stats(unique)
        stats: dict[str, BlobStat] = {}
        bad: dict[str, str] = {}
        for digest in unique:
            path = self._blobs.path(digest)
            st = os.stat(path)
            now = (st.st_ino, st.st_mtime_ns, st.st_size)
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

    # ---- checks ------------------------------------------------------------------------------

    def check(
        self, ref: str | ArtifactRecord, *, rehash: bool = False, repair: bool = True
    ) -> builtins.list[Problem]:
        """Problems with this store's copy of artifact ``ref`` (a key or a record); empty
        means healthy here.

        Cheap by default: ``stat`` of each blob against its recorded (inode, mtime_ns, size),
        re-hashing only blobs whose stat moved. ``rehash=True`` re-hashes every blob (verify).
        With ``repair`` (the default) damaged blobs are quarantined and the artifacts that use
        them marked corrupt in this store, and stat records are brought up to date; without it
        nothing is written (a read-only ``verify``). Writes are best effort: on a full disk or
        a read-only store the check still answers. An artifact this store never held gives
        one problem with ``absent`` set, and nothing is written.
        """
        record = ref if isinstance(ref, ArtifactRecord) else self.get(ref)
        if record is None:
            raise ArtifactNotFound(str(ref))
        copy, mark = self._local.own(record.key)
        if copy is not None and copy.manifest_digest != record.manifest_digest:
            record = self._own(record)  # a row as the index has it (a listing): use our copy
        if mark is not None and not rehash:
            return [Problem("artifact", f"was found corrupt: {mark}")]
        # A mark on the index row itself was written by an older rmbuild in whichever store
        # sharing the index saw damage; here it only means: re-hash before trusting.
        legacy = mark is None and copy is None and record.corrupt
        parts = self._parts(record, held=copy is not None)
        if isinstance(parts, Problem):
            if parts.absent:
                return [parts]
            bad = {record.manifest_digest: parts.detail}  # the manifest is gone or damaged
            problems = [parts]
        else:
            bad = self._check_blobs(parts, rehash=rehash or legacy, repair=repair)
            problems = [
                Problem(p.what, bad[p.digest], p.digest, p.path) for p in parts if p.digest in bad
            ]
        if repair and bad:
            self._quarantine_and_mark(bad)
        elif repair and (mark is not None or legacy) and not problems:
            self.clear_corrupt(record.key)  # re-hashed and whole (a blob restored by hand)
        return problems

    def verify(self, key: str, *, repair: bool = False) -> builtins.list[str]:
        """Re-hash every blob of artifact ``key``; return problems found (empty = healthy).

        With ``repair``, damaged blobs are quarantined so the next build rebuilds the artifact.
        An artifact this store does not hold gives one problem (see :meth:`check`).
        """
        return [str(p) for p in self.check(key, rehash=True, repair=repair)]

    def _parts(self, record: ArtifactRecord, *, held: bool) -> builtins.list[_Part] | Problem:
        """Every blob of ``record``, manifest first; a Problem if the manifest is unreadable.

        The manifest is read (and so hashed) here. A manifest missing here is damage where
        this store held the artifact (``held``: it recorded a copy, a stat, or quarantined
        it), and otherwise an artifact this store never had.
        """
        md = record.manifest_digest
        try:
            manifest = self.get_manifest(md)
        except CorruptObject:
            if not self._blobs.exists(md):
                if held or self._quarantined(md) or self.blob_stats([md]):
                    return Problem("manifest", self._gone(md), md)
                return Problem("artifact", NOT_HERE, absent=True)
            return Problem("manifest", "is corrupt (content does not match digest)", md)
        except CorruptManifest as exc:
            return Problem("manifest", f"is not a valid manifest ({exc})", md)
        parts = [_Part("manifest", md)]
        parts += [_Part(f"file {r!r}", e.digest, e.size, r) for r, e in manifest.files.items()]
        blobs = record.metadata.get("blobs", []) if isinstance(record.metadata, dict) else []
        parts += [_Part("metadata blob", d, optional=True) for d in blobs]
        return parts

    def _quarantined(self, digest: str) -> bool:
        return any((self.root / "quarantine").glob(f"{digest}.*"))

    def _gone(self, digest: str) -> str:
        return (
            "is quarantined (found corrupt earlier)" if self._quarantined(digest) else "is missing"
        )

    def _check_blobs(
        self, parts: builtins.list[_Part], *, rehash: bool, repair: bool
    ) -> dict[str, str]:
        """Damaged blobs among ``parts``: digest -> what is wrong."""
        manifest_digest = parts[0].digest
        sizes: dict[str, int | None] = {}
        optional: set[str] = set()
        for p in parts:
            sizes.setdefault(p.digest, p.size)
            if p.optional:
                optional.add(p.digest)
        optional -= {p.digest for p in parts if not p.optional}
        digests = list(sizes)
        recorded = self.blob_stats(digests)
        bad: dict[str, str] = {}
        updates: dict[str, BlobStat] = {}
        for digest in digests:
            path = self._blobs.path(digest)
            old = recorded.get(digest)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                # Another store's build log (same output, built there): never ours to lose.
                if digest in optional and old is None and not self._quarantined(digest):
                    continue
                bad[digest] = self._gone(digest)
                continue
            now = (st.st_ino, st.st_mtime_ns, st.st_size)
            size = sizes[digest]
            if size is not None and st.st_size != size:
                bad[digest] = f"has {st.st_size} bytes, the manifest says {size}"
                continue
            # The manifest was just read through a hash check; any other blob whose stat moved
            # (or, for verify, every blob) is re-read.
            if digest != manifest_digest and (rehash or (old is not None and old != now)):
                if hashing.hash_path(path) != digest:
                    bad[digest] = "is corrupt (content does not match digest)"
                    continue
            if old != now:
                updates[digest] = now  # first check of an older artifact, or a benign touch
        if repair and updates:
            self.record_blob_stats(updates)
        return bad

    def _quarantine_and_mark(self, bad: dict[str, str]) -> None:
        """Move damaged blobs to ``quarantine/``; mark this store's artifacts using one corrupt."""
        qdir = self.root / "quarantine"
        damaged = []
        for digest in bad:
            src = self._blobs.path(digest)
            if not src.exists():
                continue
            try:
                qdir.mkdir(exist_ok=True)
                os.rename(src, qdir / f"{digest}.{time.time_ns()}")
                damaged.append(digest)
            except OSError as exc:
                if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                    raise
                # Cannot move it: the marks below still keep it from being served.
        self.forget_blob_stats(damaged)
        marks: dict[str, str] = {}
        for rec in self._maybe_using(bad):
            why = self._uses_of(rec, bad)
            if why:
                marks[rec.key] = why
                remove_aside(self.root / "trees" / rec.key)  # may hold links to the bad inode
        self.mark_corrupt(marks)

    def _maybe_using(self, bad: dict[str, str]) -> Iterator[ArtifactRecord]:
        """Artifacts that may reference a blob in ``bad``, as this store has them: those whose
        ``artifact_blobs`` rows (or this store's copies) name one, and those committed before
        migration 0004 (only their manifests know). The index answers for the rest, so a
        damaged blob does not mean reading every manifest."""
        rows, refs = self.gc_index()
        for row in rows:
            blobs = refs.get(row[0])
            if blobs is None or any(d in bad for d, _ in blobs):
                rec = self.get(row[0])
                if rec is not None:
                    yield rec

    def _uses_of(self, record: ArtifactRecord, bad: dict[str, str]) -> str | None:
        """Why ``record`` is damaged by the blobs in ``bad``, or None if it uses none of them."""
        if record.manifest_digest in bad:
            return f"manifest: blob {record.manifest_digest} {bad[record.manifest_digest]}"
        try:
            manifest = self.get_manifest(record.manifest_digest)
        except (CorruptObject, CorruptManifest):
            return None  # its own check will say so
        why = [
            f"file {rel!r}: blob {e.digest} {bad[e.digest]}"
            for rel, e in manifest.files.items()
            if e.digest in bad
        ]
        blobs = record.metadata.get("blobs", []) if isinstance(record.metadata, dict) else []
        why += [f"metadata blob: blob {d} {bad[d]}" for d in blobs if d in bad]
        return "; ".join(why) or None
