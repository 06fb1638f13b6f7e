"""Plain data types the store hands out: manifests, artifact records and gc reports.

Kept free of SQLAlchemy so that importing :mod:`artifact_store` stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from artifact_store.errors import CorruptManifest
from artifact_store.hashing import hash_bytes, is_digest

MANIFEST_VERSION = 1


def canonical_json(obj: Any) -> bytes:
    """The one JSON encoding whose bytes are hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_relpath(relpath: str, digest: str | None = None) -> None:
    """Raise :class:`CorruptManifest` unless ``relpath`` is a clean relative POSIX path.

    Materialize joins these paths onto a destination directory, so anything that could climb
    out of it ('..', absolute paths, drive letters or backslashes from another OS) is refused.
    """
    if not isinstance(relpath, str) or not relpath:
        raise CorruptManifest(digest, f"empty or non-string path {relpath!r}")
    if "\\" in relpath or "\x00" in relpath or relpath.startswith("/") or ":" in relpath[:2]:
        raise CorruptManifest(digest, f"path {relpath!r} is not a relative POSIX path")
    for part in relpath.split("/"):
        if part in ("", ".", ".."):
            raise CorruptManifest(digest, f"path {relpath!r} escapes or is not normalized")


@dataclass(frozen=True)
class FileEntry:
    """One file of a tree: its blob digest, size in bytes and POSIX mode (0o644 or 0o755)."""

    digest: str
    size: int
    mode: int = 0o644

    @property
    def executable(self) -> bool:
        return bool(self.mode & 0o111)


@dataclass(frozen=True, eq=True)
class Manifest:
    """A directory tree: relpath -> :class:`FileEntry`. Stored as a blob named ``digest``."""

    digest: str
    files: dict[str, FileEntry]
    size: int

    __hash__ = None  # type: ignore[assignment]  # holds a dict; compare by value instead

    @classmethod
    def from_files(cls, files: Mapping[str, FileEntry]) -> Manifest:
        """Build a manifest (and its digest) from entries; paths are validated."""
        for rel, entry in files.items():
            check_relpath(rel)
            if not is_digest(entry.digest):
                raise CorruptManifest(None, f"{rel!r} has a malformed digest {entry.digest!r}")
        ordered = {rel: files[rel] for rel in sorted(files)}
        digest = hash_bytes(_encode(ordered))
        return cls(digest=digest, files=ordered, size=sum(e.size for e in ordered.values()))

    def to_json(self) -> bytes:
        """The canonical bytes of this manifest (what ``digest`` is the SHA-256 of)."""
        return _encode(self.files)

    @classmethod
    def from_json(cls, data: bytes, digest: str) -> Manifest:
        """Parse manifest bytes read from blob ``digest``; raise :class:`CorruptManifest`."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptManifest(digest, f"not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
            raise CorruptManifest(digest, f"not a version-{MANIFEST_VERSION} manifest")
        raw = doc.get("files")
        if not isinstance(raw, dict):
            raise CorruptManifest(digest, "missing 'files' mapping")
        files: dict[str, FileEntry] = {}
        for rel, e in raw.items():
            check_relpath(rel, digest)
            try:
                entry = FileEntry(str(e["digest"]), int(e["size"]), int(e["mode"]))
            except (TypeError, KeyError, ValueError):
                raise CorruptManifest(digest, f"bad entry for {rel!r}") from None
            if not is_digest(entry.digest) or entry.size < 0:
                raise CorruptManifest(digest, f"bad entry for {rel!r}")
            files[rel] = entry
        return cls(digest=digest, files=files, size=sum(e.size for e in files.values()))


def _encode(files: Mapping[str, FileEntry]) -> bytes:
    return canonical_json(
        {
            "version": MANIFEST_VERSION,
            "files": {
                rel: {"digest": e.digest, "size": e.size, "mode": e.mode}
                for rel, e in files.items()
            },
        }
    )


@dataclass(frozen=True)
class ArtifactRecord:
    """One row of the action cache: ``key`` -> manifest, plus what it was built for.

    ``model``/``target`` are those of the build that first made it; ``uses`` are all the
    sorted ``(model, target)`` pairs it serves (that first one included, see Store.add_use).
    """

    key: str
    manifest_digest: str
    model: str
    target: str
    backend: str
    created_at: datetime
    last_used_at: datetime
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    uses: tuple[tuple[str, str], ...] = ()
    # "ok", or "corrupt" once a check found a damaged blob; a rebuild resets it.
    state: str = "ok"
    problem: str | None = None

    __hash__ = None  # type: ignore[assignment]  # metadata is a dict

    @property
    def corrupt(self) -> bool:
        """True if a check found this artifact's content damaged (never served as a hit)."""
        return self.state == "corrupt"


@dataclass(frozen=True)
class GcReport:
    """What :meth:`Store.gc` removed, or with ``dry_run`` would remove."""

    dry_run: bool
    evicted_keys: tuple[str, ...] = ()
    blobs_removed: int = 0
    bytes_freed: int = 0
    tmp_removed: int = 0
    trees_removed: int = 0
    logs_removed: int = 0  # failed-build logs past their retention
    locks_removed: int = 0  # lock files of keys with no artifact and no holder
    stat_rows_removed: int = 0  # stat-cache rows of files that no longer exist
    skipped_in_use: tuple[str, ...] = ()  # eviction candidates spared: a build or run held them
    size_before: int = 0  # bytes of blobs referenced by artifacts, before eviction
    size_after: int = 0  # same, after eviction
    grace_s: float = 0.0  # unreferenced blobs younger than this were kept
    pending_blobs: int = 0  # unreferenced blobs kept for the grace period: a later gc frees them
    pending_bytes: int = 0
    pending_until: float | None = None  # epoch seconds when the last of them is past the grace

    def summary(self) -> str:
        """One line for humans."""
        verb = "would free" if self.dry_run else "freed"
        pending = (
            f"; {self.pending_bytes} bytes in {self.pending_blobs} unreferenced blobs younger "
            f"than the {self.grace_s:g} s grace period are kept (a later gc frees them)"
            if self.pending_blobs
            else ""
        )
        return (
            f"{verb} {self.bytes_freed} bytes: {self.blobs_removed} blobs, "
            f"{len(self.evicted_keys)} evicted artifacts, {self.tmp_removed} tmp dirs, "
            f"{self.trees_removed} trees, {self.logs_removed} logs, {self.locks_removed} locks, "
            f"{self.stat_rows_removed} stat rows{pending}; "
            f"referenced {self.size_before} -> {self.size_after} bytes"
        )
