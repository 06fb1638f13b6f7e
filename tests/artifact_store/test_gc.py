from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from artifact_store import Store


def _keys(*prefixes: str) -> list[str]:
    return [p + "0" * (64 - len(p)) for p in prefixes]


def test_gc_removes_only_unreferenced_blobs(store: Store, tmp_path: Path, build) -> None:
    (k,) = _keys("aa")
    log = store.put_bytes(b"build log")
    m = build(store, tmp_path, k, {"keep": b"keep"}, metadata={"blobs": [log]})
    junk = store.put_bytes(b"junk")

    report = store.gc(dry_run=True, grace=0)
    assert (report.blobs_removed, report.bytes_freed) == (1, 4)
    assert store.has_blob(junk), "dry run deleted something"

    report = store.gc(grace=0)
    assert report.blobs_removed == 1 and not report.dry_run
    assert not store.has_blob(junk)
    for d in (log, m.digest, m.files["keep"].digest):
        assert store.has_blob(d)
    assert store.verify(k) == []


def test_gc_grace_protects_fresh_uncommitted_blobs(store: Store) -> None:
    d = store.put_bytes(b"just built, not yet committed")
    assert store.gc().blobs_removed == 0
    assert store.has_blob(d)
    # Re-putting an old blob leaves it untouched: its stat is what the integrity check
    # compares. A build re-using it is protected by the gc lock (Store.writing) instead;
    # see test_gc_protocol.py.
    old = time.time() - 7200
    os.utime(store.blob_path(d), (old, old))
    before = store.blob_path(d).stat().st_mtime_ns
    store.put_bytes(b"just built, not yet committed")
    assert store.blob_path(d).stat().st_mtime_ns == before


def test_gc_max_size_evicts_least_recently_used(store: Store, tmp_path: Path, build) -> None:
    k1, k2, k3 = _keys("01", "02", "03")
    shared = b"s" * 1000
    for k in (k1, k2, k3):
        build(store, tmp_path, k, {"shared": shared, "own": k.encode() * 10})
    store.touch(k1)  # k2 is now the least recently used, then k3
    store.materialize(k2)
    store.touch(k1)
    store.touch(k3)

    before = store.gc(dry_run=True, grace=0, max_size=10**9)
    assert before.evicted_keys == ()
    target = before.size_before - 1  # forces exactly one eviction
    dry = store.gc(dry_run=True, grace=0, max_size=target)
    assert dry.evicted_keys == (k2,)
    assert store.get(k2) is not None

    real = store.gc(grace=0, max_size=target)
    assert real.evicted_keys == (k2,)
    assert real.size_after <= target
    assert store.get(k2) is None and store.get(k1) is not None
    assert not (store.root / "trees" / k2).exists(), "tree of evicted artifact kept"
    # k2's own file and manifest go; the shared blob stays for k1 and k3.
    assert real.blobs_removed == 2
    assert store.has_blob(hashlib.sha256(shared).hexdigest())
    assert store.verify(k1) == [] and store.verify(k3) == []


def test_gc_removes_stale_tmp_dirs_but_not_live_ones(store: Store) -> None:
    stale = store.tmpdir("build-")
    (stale / "deep").mkdir()
    (stale / "deep" / "x").write_bytes(b"12345")
    old = time.time() - 7200
    for p in (stale / "deep" / "x", stale / "deep", stale):
        os.utime(p, (old, old))
    live = store.tmpdir("build-")
    (live / "y").write_bytes(b"1")
    os.utime(live, (old, old))  # top-level mtime old, but a file inside is fresh

    report = store.gc(dry_run=True)
    assert report.tmp_removed == 1 and stale.exists()
    report = store.gc()
    assert report.tmp_removed == 1 and report.bytes_freed >= 5
    assert not stale.exists() and live.exists()


def test_gc_removes_trees_of_deleted_artifacts(store: Store, tmp_path: Path, build) -> None:
    (k,) = _keys("bb")
    build(store, tmp_path, k, {"f": b"1"})
    tree = store.materialize(k)
    assert store.gc(grace=0).trees_removed == 0
    store.delete(k)
    report = store.gc(grace=0)
    assert report.trees_removed == 1 and not tree.exists()
    assert report.blobs_removed == 2


def test_gc_keeps_a_silent_build_dir_while_its_builder_lives(store: Store) -> None:
    old = time.time() - 7200
    with store.build_dir("build-") as busy:
        (busy / "quiet").write_bytes(b"a compiler that prints nothing for hours")
        for p in (busy / "quiet", busy / ".in-use", busy):
            os.utime(p, (old, old))
        assert store.gc().tmp_removed == 0 and busy.exists()
    assert not busy.exists()  # removed on exit
    dead = store.tmpdir("build-")
    (dead / ".in-use").write_bytes(b"")  # marker left by a killed builder: no flock held
    for p in (dead / ".in-use", dead):
        os.utime(p, (old, old))
    assert store.gc().tmp_removed == 1 and not dead.exists()
