"""gc against concurrent builds and loads and what gc collects.

The interleavings are made deterministic with gc's ``on_snapshot`` hook (called between its
snapshot and its sweep) and the lock module's wait seam, which tells the test the moment a
thread is blocked on a lock; no sleeps, no timing assertions.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from artifact_store import CorruptObject, Store, locks

WAIT = 60  # only guards against a hang; never reached when the protocol holds


@pytest.fixture
def wait_seen(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set as soon as any thread has to wait for a lock."""
    seen = threading.Event()
    monkeypatch.setattr(locks, "_notify_wait", lambda path: seen.set())
    return seen


def _run(target, *args) -> tuple[threading.Thread, list]:  # noqa: ANN001
    out: list = []

    def body() -> None:
        try:
            out.append(target(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    t = threading.Thread(target=body)
    t.start()
    return t, out


def test_a_commit_during_gc_waits_and_survives_intact(
    tmp_path: Path, make_tree, wait_seen: threading.Event
) -> None:
    root = tmp_path / "store"
    src = make_tree(tmp_path / "src", {"model.bin": b"weights" * 100, "cfg.json": b"{}"})
    with Store(root) as gc_store:
        builder = Store(root)

        def build() -> str:
            with builder.writing():  # what rmbuild's _run_stage does, ingest to commit
                manifest = builder.put_tree(src)
                builder.commit("k1", manifest, model="m", target="t", backend="b", metadata={})
            return str(builder.materialize("k1"))

        def between_snapshot_and_sweep(snapshot) -> None:  # noqa: ANN001
            assert "k1" not in snapshot.records
            thread, result = _run(build)
            hold.append((thread, result))
            assert wait_seen.wait(WAIT)  # the builder is now blocked on the gc lock

        hold: list = []
        report = gc_store.gc(grace=0, on_snapshot=between_snapshot_and_sweep)
        thread, result = hold[0]
        thread.join(WAIT)
        builder.close()
        assert isinstance(result[0], str), result
        assert report.blobs_removed == 0 and report.trees_removed == 0
        assert gc_store.verify("k1") == []
        assert (Path(result[0]) / "model.bin").read_bytes() == b"weights" * 100
        # And a later gc keeps it: it is referenced now.
        assert gc_store.gc(grace=0).blobs_removed == 0 and gc_store.verify("k1") == []


def test_gc_waits_for_a_build_that_is_storing_its_results(
    tmp_path: Path, make_tree, wait_seen: threading.Event
) -> None:
    root = tmp_path / "store"
    src = make_tree(tmp_path / "src", {"model.bin": b"a" * 1000})
    stored, go_on = threading.Event(), threading.Event()
    with Store(root) as builder, Store(root) as gc_store:

        def build() -> None:
            with builder.writing():
                manifest = builder.put_tree(src)
                for digest in [manifest.digest, *(e.digest for e in manifest.files.values())]:
                    old = time.time() - 7200  # older than any grace: only the lock saves them
                    os.utime(builder.blob_path(digest), (old, old))
                stored.set()
                assert go_on.wait(WAIT)
                builder.commit("k1", manifest, model="m", target="t", backend="b", metadata={})

        b_thread, b_out = _run(build)
        assert stored.wait(WAIT)
        g_thread, g_out = _run(lambda: gc_store.gc(grace=0))
        assert wait_seen.wait(WAIT)  # gc is blocked behind the build's shared lock
        go_on.set()
        b_thread.join(WAIT)
        g_thread.join(WAIT)
        assert b_out == [None] and g_out[0].blobs_removed == 0
        assert gc_store.verify("k1") == []


def test_a_commit_without_the_lock_is_refused_never_silently_lost(
    store: Store, tmp_path: Path, make_tree
) -> None:
    manifest = store.put_tree(make_tree(tmp_path / "src", {"f": b"x" * 10}))
    store.gc(grace=0)  # nobody held the lock: the unreferenced blobs are collected
    with pytest.raises(CorruptObject, match="missing"):
        store.commit("k1", manifest, model="m", target="t", backend="b", metadata={})
    assert store.get("k1") is None


def test_eviction_spares_a_pinned_artifact_and_its_tree(
    store: Store, tmp_path: Path, build
) -> None:
    build(store, tmp_path, "old", {"f": b"o" * 1000})
    build(store, tmp_path, "new", {"f": b"n" * 1000})
    tree = store.materialize("old")
    store.materialize("new")
    with store.pin("old"):  # a build reads it as input, or `run` serves it
        report = store.gc(max_size=1000, grace=0)
        assert "old" in report.skipped_in_use and report.evicted_keys == ("new",)
        assert (tree / "f").read_bytes() == b"o" * 1000
    assert store.get("old") is not None and store.get("new") is None
    assert not (store.root / "trees" / "new").exists()


def test_gc_module_does_not_reach_into_the_store() -> None:
    """No private store attribute and no import of artifact_store.store (a cycle)."""
    import ast

    import artifact_store.gc as gc

    tree = ast.parse(Path(gc.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert "artifact_store.store" not in imported
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "store"
        and node.attr.startswith("_")
    ]
    assert private == []


# ---- Logs, locks, stat rows --------------------------------------------------------


def test_gc_collects_old_failure_logs_only(store: Store) -> None:
    logs = store.root / "logs"
    old, young = logs / "aaaa-old.log", logs / "bbbb-young.log"
    old.write_text("tool failed\n")
    young.write_text("tool failed\n")
    ten_days = time.time() - 10 * 86400
    os.utime(old, (ten_days, ten_days))
    assert store.gc(log_retention=7 * 86400, dry_run=True).logs_removed == 1
    assert old.exists()
    report = store.gc(log_retention=7 * 86400)
    assert report.logs_removed == 1 and not old.exists() and young.exists()
    assert store.gc(log_retention=0).logs_removed == 1 and not young.exists()


def test_gc_collects_lock_files_without_artifact_or_holder(
    store: Store, tmp_path: Path, build
) -> None:
    build(store, tmp_path, "kept", {"f": b"k"})
    locks_dir = store.root / "locks"
    with store.lock("kept"):
        pass
    with store.lock("gone"):
        pass
    with store.pin("gone2"):
        pass
    report = store.gc()
    assert report.locks_removed == 2
    assert (locks_dir / "kept.lock").exists()  # its artifact exists
    assert not (locks_dir / "gone.lock").exists() and not (locks_dir / "gone2.pin").exists()
    assert (locks_dir / "gc.lock").exists()
    with store.lock("busy"):  # a build in progress: its lock is held, so it stays
        assert store.gc().locks_removed == 0
        assert (locks_dir / "busy.lock").exists()
    # The lock still works after gc removed its file (a new file, a new inode).
    with store.lock("gone", timeout=0):
        pass


def test_a_lock_file_removed_while_someone_waits_is_not_shared(
    store: Store, wait_seen: threading.Event
) -> None:
    """The unlink race: a waiter that opened the old file must not end up holding a lock on
    a dead inode while a newcomer locks the new file."""
    path = store.root / "locks" / "k.lock"
    first = locks.FileLock(path)
    assert first.acquire(timeout=0)
    waiter = locks.FileLock(path)
    t, out = _run(waiter.acquire)
    assert wait_seen.wait(WAIT)
    path.unlink()  # what gc does (it holds the lock while it unlinks; here `first` does)
    first.release()
    t.join(WAIT)
    assert out == [True] and waiter.held
    newcomer = locks.FileLock(path)
    assert not newcomer.acquire(timeout=0)  # the waiter holds the file that is there now
    waiter.release()
    assert newcomer.acquire(timeout=0)
    newcomer.release()


def test_gc_drops_stat_cache_rows_of_files_gone_or_changed(
    store: Store, tmp_path: Path, age
) -> None:
    files = []
    for name in ("gone", "changed", "same"):
        f = tmp_path / name
        f.write_bytes(name.encode())
        age(f)
        files.append(f)
    store.hash_files(files)
    files[0].unlink()
    files[1].write_bytes(b"other content")
    report = store.gc()
    assert report.stat_rows_removed == 2
    assert store.gc().stat_rows_removed == 0  # "same" is still cached and still valid
