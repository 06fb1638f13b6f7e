"""Garbage collection: the only place anything in the store is deleted.

Reachability is computed from the index: an artifact keeps alive its manifest blob, every
file blob the manifest names, and the blobs listed in ``metadata["blobs"]`` (build logs and
the like). Everything else under ``objects/`` older than the grace period is garbage.

The protocol. gc holds the store-wide gc lock (``locks/gc.lock``) exclusively
from its snapshot of the index to the end of its sweep. Everything that makes blobs live or
lays them out holds it shared: a build from its first ingested blob to its index row
(``Store.writing``), ``Store.commit`` itself, ``Store.materialize``, and taking a pin. So no
artifact can be committed, and no tree laid out, between gc deciding "garbage" and deleting
it. The snapshot is re-checked against the index just before the sweep (a writer that
bypasses the lock, e.g. ``delete``/``tag``, or a library caller's own commit path, is seen).
Pinned artifacts (a build's input, a loaded ``run`` session) and keys whose build lock is held
are never evicted, nor are their trees removed.

What gc collects: unreferenced blobs past ``grace`` (younger ones, e.g. those of
an artifact evicted right after it was built, are counted in the report as pending: a later gc
frees them); scratch dirs in ``tmp/``
untouched for an hour and not held by a live build; trees of artifacts that no longer exist;
``logs/`` files (the logs of failed builds; a successful build moves its log into the store)
older than ``log_retention``; lock files of keys with no artifact that no process holds; and
stat-cache rows of files that no longer exist or have changed since they were hashed.
``quarantine/`` is left alone: it is evidence for whoever investigates the damage.

This module reaches the store only through its public methods (see :class:`GcStore`) and
never imports :mod:`artifact_store.store`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from artifact_store.errors import ArtifactNotFound, StoreError
from artifact_store.locks import FIXED_LOCKS, GC_LOCK, IN_USE, FileLock, is_held, remove_if_unheld
from artifact_store.reader import GcRow
from artifact_store.records import ArtifactRecord, GcReport, Manifest

# Scratch dirs (tmp/) and half-built trees untouched this long belong to dead processes.
STALE_AFTER = 3600.0
# Unreferenced blobs younger than this are kept (Store.gc's default ``grace``): they may belong
# to a build that stores blobs without holding the gc lock (a library caller's own commit path).
GRACE = 3600.0
# Failed builds' logs are kept this long by default (seconds): long enough to read after a
# weekend, short enough that a CI runner's store does not fill with them.
LOG_RETENTION = 14 * 86400.0


class GcStore(Protocol):
    """What gc needs of a store (all public; :class:`artifact_store.Store` provides it)."""

    root: Path

    def get(self, key: str) -> ArtifactRecord | None: ...
    def gc_index(
        self, only: Iterable[str] | None = None
    ) -> tuple[list[GcRow], dict[str, list[tuple[str, int]]]]: ...
    def artifact_keys(self) -> set[str]: ...
    def gc_live(self) -> tuple[set[str], dict[str, int], list[str]]: ...
    def get_manifest(self, digest: str) -> Manifest: ...
    def blob_path(self, digest: str) -> Path: ...
    def delete(self, key: str) -> None: ...
    def forget_blob_stats(self, digests: list[str]) -> bool: ...
    def prune_stat_cache(self, *, dry_run: bool) -> int: ...


@dataclass(frozen=True)
class Entry:
    """What gc needs of an artifact: its key and the dates of LRU eviction."""

    key: str
    manifest_digest: str
    created_at: datetime
    last_used_at: datetime


@dataclass
class Snapshot:
    """The index as gc saw it: each artifact and the blobs it keeps alive."""

    records: dict[str, Entry | None] = field(default_factory=dict)
    refs: dict[str, set[str]] = field(default_factory=dict)  # key -> digests
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> bytes
    # Light (no eviction): every referenced blob's size, without knowing whose; the
    # records' values are then None and refs holds only artifacts read from their manifests.
    light: bool = False

    def add_rows(
        self, store: GcStore, rows: list[GcRow], refs: dict[str, list[tuple[str, int]]]
    ) -> None:
        """Artifacts as :meth:`GcStore.gc_index` gives them (one query for 100,000
        artifacts, where reading every manifest took seconds)."""
        sizes = self.sizes
        for row in rows:
            key = row[0]
            blobs = refs.get(key)
            if blobs is None:  # committed before migration 0004: read its manifest
                rec = store.get(key)
                if rec is not None:
                    self.add(store, rec)
                continue
            self.records[key] = Entry(*row)
            self.refs[key] = {d for d, _ in blobs}
            for digest, size in blobs:
                sizes[digest] = size

    def add(self, store: GcStore, rec: ArtifactRecord) -> None:
        digests = {rec.manifest_digest}
        self.sizes[rec.manifest_digest] = _size(store.blob_path(rec.manifest_digest))
        try:
            manifest: Manifest | None = store.get_manifest(rec.manifest_digest)
        except StoreError:
            manifest = None  # verify reports it; its files cannot be known, so none are kept
        if manifest is not None:
            for entry in manifest.files.values():
                digests.add(entry.digest)
                self.sizes[entry.digest] = entry.size
        for d in rec.metadata.get("blobs", []) if isinstance(rec.metadata, dict) else []:
            digests.add(d)
            self.sizes[d] = _size(store.blob_path(d))
        self.records[rec.key] = Entry(
            rec.key, rec.manifest_digest, rec.created_at, rec.last_used_at
        )
        self.refs[rec.key] = digests


def take_snapshot(store: GcStore, *, evicting: bool = True) -> Snapshot:
    """Read the index once: every artifact and what it references. Without eviction only
    the set of referenced blobs matters, which three plain queries give (100,000
    artifacts, 400,000 blobs)."""
    snap = Snapshot(light=not evicting)
    if evicting:
        snap.add_rows(store, *store.gc_index())
        return snap
    keys, sizes, legacy = store.gc_live()
    snap.records = dict.fromkeys(keys)
    snap.sizes = sizes
    for key in legacy:  # committed before migration 0004: read its manifest
        rec = store.get(key)
        if rec is not None:
            snap.add(store, rec)
    return snap


def recheck(store: GcStore, snap: Snapshot) -> Snapshot:
    """Bring ``snap`` up to date with the index: add artifacts that appeared since, drop gone
    ones. Blobs of anything in the index now are therefore never swept. Only keys are read
    again; the rows of new ones are fetched by key."""
    now = store.artifact_keys()
    if snap.light:
        if any(key not in now for key in snap.records):  # rare: deleted meanwhile
            return recheck(store, take_snapshot(store, evicting=False))
        new = [key for key in now if key not in snap.records]
        if new:
            snap.add_rows(store, *store.gc_index(new))
        return snap
    for key in list(snap.records):
        if key not in now:
            del snap.records[key], snap.refs[key]
    new = [key for key in now if key not in snap.records]
    if new:
        snap.add_rows(store, *store.gc_index(new))
    return snap


def collect(
    store: GcStore,
    *,
    dry_run: bool,
    max_size: int | None,
    grace: float,
    log_retention: float = LOG_RETENTION,
    on_snapshot: Callable[[Snapshot], None] | None = None,
) -> GcReport:
    """Implementation of :meth:`Store.gc`; ``on_snapshot`` is called between the snapshot and
    the sweep (tests interleave other work there)."""
    lock = FileLock(store.root / "locks" / GC_LOCK)
    lock.acquire()
    try:
        snap = take_snapshot(store, evicting=max_size is not None)
        if on_snapshot is not None:
            on_snapshot(snap)
        return _sweep(store, recheck(store, snap), dry_run, max_size, grace, log_retention)
    finally:
        lock.release()


def _sweep(
    store: GcStore,
    snap: Snapshot,
    dry_run: bool,
    max_size: int | None,
    grace: float,
    log_retention: float,
) -> GcReport:
    now = time.time()
    locks = store.root / "locks"
    refcount: Counter[str] = Counter()
    if snap.light:  # no eviction: every blob in sizes is referenced (see take_snapshot)
        total = sum(snap.sizes.values())
    else:
        for digests in snap.refs.values():
            refcount.update(digests)
        total = sum(snap.sizes[d] for d in refcount)
    size_before = total

    evicted: list[str] = []
    skipped: list[str] = []
    if max_size is not None:
        # Oldest use first; creation time breaks ties so the order is stable.
        order = sorted(snap.records.values(), key=lambda r: (r.last_used_at, r.created_at, r.key))
        for rec in order:
            if total <= max_size:
                break
            if _busy(locks, rec.key):
                skipped.append(rec.key)  # a build reads it or a `run` serves it right now
                continue
            evicted.append(rec.key)
            for d in snap.refs[rec.key]:
                refcount[d] -= 1
                if refcount[d] == 0:
                    del refcount[d]
                    total -= snap.sizes[d]
    if not dry_run:
        for key in evicted:
            try:
                store.delete(key)
            except ArtifactNotFound:
                pass  # deleted concurrently

    live: Container[str] = snap.sizes if snap.light else set(refcount)
    blobs_removed = 0
    bytes_freed = 0
    gone: list[str] = []
    pending_blobs = pending_bytes = 0
    pending_until: float | None = None
    for digest, path in _unreferenced(store, live):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if now - st.st_mtime < grace:
            # May belong to a build that stores blobs without holding the gc lock: kept, and
            # reported, so "freed 0 bytes" after an eviction says when the bytes will go.
            pending_blobs += 1
            pending_bytes += st.st_size
            until = st.st_mtime + grace
            pending_until = until if pending_until is None else max(pending_until, until)
            continue
        blobs_removed += 1
        bytes_freed += st.st_size
        gone.append(digest)
        if not dry_run:
            path.unlink(missing_ok=True)
    if not dry_run:
        store.forget_blob_stats(gone)

    tmp_removed = 0
    for entry in _children(store.root / "tmp"):
        if now - _newest_mtime(entry) > STALE_AFTER and not is_held(entry / IN_USE):
            tmp_removed += 1
            bytes_freed += _tree_bytes(entry)
            if not dry_run:
                _remove(entry)

    live_keys = set(snap.records) - set(evicted)
    trees_removed = 0
    for entry in _children(store.root / "trees"):
        if entry.name.startswith("."):
            stale = now - _newest_mtime(entry) > STALE_AFTER  # temp or set-aside trees
        else:
            stale = entry.name not in live_keys and not _busy(locks, entry.name)
        if stale:
            trees_removed += 1
            if not dry_run:
                _remove(entry)

    logs_removed = 0
    for entry in _children(store.root / "logs"):
        if entry.is_file() and now - _newest_mtime(entry) > log_retention:
            logs_removed += 1
            bytes_freed += _size(entry)
            if not dry_run:
                entry.unlink(missing_ok=True)

    locks_removed = 0
    for entry in _children(locks):
        key, _, suffix = entry.name.rpartition(".")
        if entry.name in FIXED_LOCKS or suffix not in ("lock", "pin", "tree") or key in live_keys:
            continue
        if dry_run:
            locks_removed += not is_held(entry)
        elif remove_if_unheld(entry):
            locks_removed += 1

    return GcReport(
        dry_run=dry_run,
        evicted_keys=tuple(evicted),
        blobs_removed=blobs_removed,
        bytes_freed=bytes_freed,
        tmp_removed=tmp_removed,
        trees_removed=trees_removed,
        logs_removed=logs_removed,
        locks_removed=locks_removed,
        stat_rows_removed=store.prune_stat_cache(dry_run=dry_run),
        skipped_in_use=tuple(skipped),
        size_before=size_before,
        size_after=total,
        grace_s=grace,
        pending_blobs=pending_blobs,
        pending_bytes=pending_bytes,
        pending_until=pending_until,
    )


_FANOUT, _TAIL = re.compile(r"[0-9a-f]{2}"), re.compile(r"[0-9a-f]{62}")


def _unreferenced(store: GcStore, live: Container[str]) -> Iterator[tuple[str, Path]]:
    """Blobs not in ``live``, as ``(digest, path)``.

    The store's layout (``objects/xx/<62 hex>``, as :meth:`GcStore.blob_path` says) is walked
    here with one compiled pattern a name: ``iter_blobs`` checks each name character by
    character and builds a Path for every blob, seconds for 400,000 blobs.
    """
    objects = store.blob_path("0" * 64).parent.parent
    try:
        fanouts = [d for d in os.scandir(objects) if _FANOUT.fullmatch(d.name)]
    except FileNotFoundError:
        return
    match = _TAIL.fullmatch
    for d in fanouts:
        if not d.is_dir(follow_symlinks=False):
            continue
        prefix = d.name
        # listdir, not scandir: plain names, and a list comprehension over them (~1 µs a blob).
        dead = [n for n in os.listdir(d.path) if prefix + n not in live and match(n)]
        for name in dead:
            yield prefix + name, objects / prefix / name


def _busy(locks: Path, key: str) -> bool:
    """Is ``key`` pinned (a build's input, a loaded session) or being built right now?"""
    return is_held(locks / f"{key}.pin") or is_held(locks / f"{key}.lock")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _children(directory: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(directory)]
    except FileNotFoundError:
        return []


def _newest_mtime(path: Path) -> float:
    # A long build may only touch files deep inside its scratch dir, so the top-level mtime
    # alone would make a live build look stale.
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                try:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
                except FileNotFoundError:
                    pass
    return newest


def _tree_bytes(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        return _size(path)
    total = 0
    for dirpath, _dirs, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
