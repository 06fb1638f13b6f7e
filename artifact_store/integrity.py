"""Integrity of stored artifacts (issue 6 #8): the cheap check, the full re-hash, quarantine.

The cheap check runs on every cache hit and every load. Blobs are read-only and never
rewritten in place, so each blob's (inode, mtime_ns, size) as recorded when it became part of
an artifact must still hold; only a blob whose stat moved is re-hashed. What it catches: a
blob deleted, truncated, grown, replaced by another file, or written in place (which moves its
mtime). What it cannot catch: a same-size rewrite whose mtime was put back (``os.utime``), or
bit rot beneath the filesystem; only a full re-hash sees those (``verify``, ``run --verify``).

A blob found damaged is moved to ``quarantine/`` (out of ``objects/``, so nothing links it
again and a rebuild stores fresh bytes under its name), and every artifact that references it
is marked corrupt, so it is never a cache hit again: the next build of its key rebuilds it.
"""

from __future__ import annotations

import builtins
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from artifact_store import hashing
from artifact_store.errors import ArtifactNotFound, CorruptManifest, CorruptObject
from artifact_store.records import ArtifactRecord, Manifest
from artifact_store.trees import remove_aside

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from artifact_store.blobs import Blobs
    from artifact_store.reader import GcRow

    BlobStat = tuple[int, int, int]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an artifact: which part (``what``), which blob, what is wrong."""

    what: str  # "file 'model.bin'", "manifest", "metadata blob", "artifact"
    detail: str
    digest: str | None = None
    path: str | None = None  # the file's relative path in the artifact, where it is one

    def __str__(self) -> str:
        blob = f"blob {self.digest} " if self.digest else ""
        return f"{self.what}: {blob}{self.detail}"


@dataclass(frozen=True)
class _Part:
    what: str
    digest: str
    size: int | None = None  # from the manifest, for files
    path: str | None = None


class Integrity:
    """Checks of :class:`~artifact_store.store.Store` (a mixin; see the module docstring)."""

    root: Path
    _blobs: Blobs

    if TYPE_CHECKING:

        def get(self, key: str) -> ArtifactRecord | None: ...
        def gc_index(
            self, only: Iterable[str] | None = None
        ) -> tuple[builtins.list[GcRow], dict[str, builtins.list[tuple[str, int]]]]: ...
        def get_manifest(self, digest: str) -> Manifest: ...
        def blob_stats(self, digests: builtins.list[str]) -> dict[str, BlobStat]: ...
        def record_blob_stats(self, stats: dict[str, BlobStat]) -> bool: ...
        def forget_blob_stats(self, digests: builtins.list[str]) -> bool: ...
        def mark_corrupt(self, problems: dict[str, str]) -> bool: ...
        def clear_corrupt(self, key: str) -> bool: ...

    def check(
        self, ref: str | ArtifactRecord, *, rehash: bool = False, repair: bool = True
    ) -> builtins.list[Problem]:
        """Problems with artifact ``ref`` (a key or a record); empty means healthy.

        Cheap by default: ``stat`` of each blob against its recorded (inode, mtime_ns, size),
        re-hashing only blobs whose stat moved. ``rehash=True`` re-hashes every blob (verify).
        With ``repair`` (the default) damaged blobs are quarantined and the artifacts that use
        them marked corrupt, and stat records are brought up to date; without it nothing is
        written (a read-only ``verify``). Writes are best effort: on a full disk or a read-only
        index the check still answers.
        """
        record = ref if isinstance(ref, ArtifactRecord) else self.get(ref)
        if record is None:
            raise ArtifactNotFound(str(ref))
        if record.corrupt and not rehash:
            return [Problem("artifact", f"was found corrupt: {record.problem or 'see verify'}")]
        parts = self._parts(record)
        if isinstance(parts, Problem):  # the manifest itself is gone or damaged
            bad = {record.manifest_digest: parts.detail}
            problems = [parts]
        else:
            bad = self._check_blobs(parts, rehash=rehash, repair=repair)
            problems = [
                Problem(p.what, bad[p.digest], p.digest, p.path) for p in parts if p.digest in bad
            ]
        if repair and bad:
            self._quarantine_and_mark(bad)
        elif repair and record.corrupt and not problems:
            self.clear_corrupt(record.key)  # re-hashed and whole again (a blob restored by hand)
        return problems

    def verify(self, key: str, *, repair: bool = False) -> builtins.list[str]:
        """Re-hash every blob of artifact ``key``; return problems found (empty = healthy).

        With ``repair``, damaged blobs are quarantined so the next build rebuilds the artifact.
        """
        return [str(p) for p in self.check(key, rehash=True, repair=repair)]

    def _parts(self, record: ArtifactRecord) -> builtins.list[_Part] | Problem:
        """Every blob of ``record``, manifest first; a Problem if the manifest is unreadable.

        The manifest is read (and so hashed) here.
        """
        md = record.manifest_digest
        try:
            manifest = self.get_manifest(md)
        except CorruptObject:
            if not self._blobs.exists(md):
                return Problem("manifest", self._gone(md), md)
            return Problem("manifest", "is corrupt (content does not match digest)", md)
        except CorruptManifest as exc:
            return Problem("manifest", f"is not a valid manifest ({exc})", md)
        parts = [_Part("manifest", md)]
        parts += [_Part(f"file {r!r}", e.digest, e.size, r) for r, e in manifest.files.items()]
        blobs = record.metadata.get("blobs", []) if isinstance(record.metadata, dict) else []
        parts += [_Part("metadata blob", d) for d in blobs]
        return parts

    def _gone(self, digest: str) -> str:
        quarantined = any((self.root / "quarantine").glob(f"{digest}.*"))
        return "is quarantined (found corrupt earlier)" if quarantined else "is missing"

    def _check_blobs(
        self, parts: builtins.list[_Part], *, rehash: bool, repair: bool
    ) -> dict[str, str]:
        """Damaged blobs among ``parts``: digest -> what is wrong."""
        manifest_digest = parts[0].digest
        sizes: dict[str, int | None] = {}
        for p in parts:
            sizes.setdefault(p.digest, p.size)
        digests = list(sizes)
        recorded = self.blob_stats(digests)
        bad: dict[str, str] = {}
        updates: dict[str, BlobStat] = {}
        for digest in digests:
            path = self._blobs.path(digest)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                bad[digest] = self._gone(digest)
                continue
            now = (st.st_ino, st.st_mtime_ns, st.st_size)
            size = sizes[digest]
            if size is not None and st.st_size != size:
                bad[digest] = f"has {st.st_size} bytes, the manifest says {size}"
                continue
            old = recorded.get(digest)
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
        """Move damaged blobs to ``quarantine/``; mark every artifact using one corrupt."""
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
        """Artifacts that may reference a blob in ``bad``: those whose ``artifact_blobs`` rows
        name one, and those committed before migration 0004 (only their manifests know). The
        index answers for the rest, so a damaged blob does not mean reading every manifest."""
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
