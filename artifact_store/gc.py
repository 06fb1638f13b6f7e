"""Garbage collection: the only place anything in the store is deleted.

Reachability is computed from the index: an artifact keeps alive its manifest blob, every
file blob the manifest names, and the blobs listed in ``metadata["blobs"]`` (build logs and
the like). Everything else under ``objects/`` older than the grace period is garbage.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from artifact_store.errors import ArtifactNotFound, StoreError
from artifact_store.records import GcReport

if TYPE_CHECKING:
    from artifact_store.store import Store

# Scratch dirs (tmp/) and half-built trees untouched this long belong to dead processes.
STALE_AFTER = 3600.0


def collect(store: Store, *, dry_run: bool, max_size: int | None, grace: float) -> GcReport:
    """Implementation of :meth:`Store.gc`."""
    now = time.time()
    records = store.list()
    refs: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    for rec in records:
        digests = {rec.manifest_digest}
        sizes[rec.manifest_digest] = _size(store.blob_path(rec.manifest_digest))
        try:
            manifest = store.get_manifest(rec.manifest_digest)
        except StoreError:
            manifest = None  # verify reports it; its files cannot be known, so none are kept
        if manifest is not None:
            for entry in manifest.files.values():
                digests.add(entry.digest)
                sizes[entry.digest] = entry.size
        for d in rec.metadata.get("blobs", []) if isinstance(rec.metadata, dict) else []:
            digests.add(d)
            sizes[d] = _size(store.blob_path(d))
        refs[rec.key] = digests

    refcount: Counter[str] = Counter()
    for digests in refs.values():
        refcount.update(digests)
    total = sum(sizes[d] for d in refcount)
    size_before = total

    evicted: list[str] = []
    if max_size is not None:
        # Oldest use first; creation time breaks ties so the order is stable.
        for rec in sorted(records, key=lambda r: (r.last_used_at, r.created_at, r.key)):
            if total <= max_size:
                break
            evicted.append(rec.key)
            for d in refs[rec.key]:
                refcount[d] -= 1
                if refcount[d] == 0:
                    del refcount[d]
                    total -= sizes[d]
    if not dry_run:
        for key in evicted:
            try:
                store.delete(key)
            except ArtifactNotFound:
                pass  # deleted concurrently

    live = set(refcount)
    blobs_removed = 0
    bytes_freed = 0
    for digest, path in store._blobs.iter_all():
        if digest in live:
            continue
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if now - st.st_mtime < grace:
            continue  # may belong to a build that has not committed yet
        blobs_removed += 1
        bytes_freed += st.st_size
        if not dry_run:
            path.unlink(missing_ok=True)

    tmp_removed = 0
    for entry in _children(store.root / "tmp"):
        if now - _newest_mtime(entry) > STALE_AFTER and not _in_use(entry):
            tmp_removed += 1
            bytes_freed += _tree_bytes(entry)
            if not dry_run:
                _remove(entry)

    live_keys = {r.key for r in records} - set(evicted)
    trees_removed = 0
    for entry in _children(store.root / "trees"):
        if entry.name.startswith("."):
            stale = now - _newest_mtime(entry) > STALE_AFTER  # temp or set-aside trees
        else:
            stale = entry.name not in live_keys
        if stale:
            trees_removed += 1
            if not dry_run:
                _remove(entry)

    return GcReport(
        dry_run=dry_run,
        evicted_keys=tuple(evicted),
        blobs_removed=blobs_removed,
        bytes_freed=bytes_freed,
        tmp_removed=tmp_removed,
        trees_removed=trees_removed,
        size_before=size_before,
        size_after=total,
    )


def _in_use(entry: Path) -> bool:
    """Is a live process holding this build dir (Store.build_dir)?"""
    from filelock import FileLock, Timeout

    from artifact_store.store import IN_USE

    marker = entry / IN_USE
    if not marker.exists():
        return False
    try:
        with FileLock(str(marker), timeout=0):
            return False
    except Timeout:
        return True


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
