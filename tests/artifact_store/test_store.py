from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import stat
from datetime import UTC
from pathlib import Path

import pytest

from artifact_store import (
    AmbiguousRef,
    ArtifactNotFound,
    CorruptManifest,
    CorruptObject,
    InvalidAlias,
    LockTimeout,
    Store,
    StoreError,
)
from artifact_store.records import canonical_json

KEY = "ab12cd34" + "0" * 56
FILES = {"model.onnx": b"graph" * 1000, "sub/weights.bin": b"\x00\x01" * 5000, "README": b"hi"}


# ---- blobs -------------------------------------------------------------------------------------


def test_put_bytes_is_idempotent_and_read_only(store: Store) -> None:
    d = store.put_bytes(b"hello")
    assert d == hashlib.sha256(b"hello").hexdigest()
    path = store.blob_path(d)
    assert path == store.root / "objects" / d[:2] / d[2:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    inode = path.stat().st_ino
    assert store.put_bytes(b"hello") == d
    assert path.stat().st_ino == inode, "an existing blob must not be rewritten"
    assert store.read_bytes(d) == b"hello"
    assert not list((store.root / "tmp").iterdir()), "temp files left behind"


def test_put_file_copy_keeps_source(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"data")
    d = store.put_file(src)
    assert src.read_bytes() == b"data" and store.read_bytes(d) == b"data"
    assert store.put_file(src) == d


def test_put_file_move_renames_source_in(store: Store) -> None:
    scratch = store.tmpdir("build-")
    src = scratch / "out.bin"
    src.write_bytes(b"output")
    ino = src.stat().st_ino
    d = store.put_file(src, move=True)
    assert not src.exists()
    assert store.blob_path(d).stat().st_ino == ino, "same-filesystem move must not copy"
    assert stat.S_IMODE(store.blob_path(d).stat().st_mode) == 0o444


def test_read_bytes_detects_corruption(store: Store) -> None:
    d = store.put_bytes(b"good")
    _corrupt(store, d)
    with pytest.raises(CorruptObject):
        store.read_bytes(d)
    assert not store.verify_blob(d)
    with pytest.raises(CorruptObject, match="missing"):
        store.read_bytes("1" * 64)


def _corrupt(store: Store, digest: str) -> None:
    p = store.blob_path(digest)
    p.chmod(0o644)
    p.write_bytes(b"evil")


# ---- trees, commit, materialize ----------------------------------------------------------------


def test_round_trip_put_tree_commit_materialize(store: Store, tmp_path: Path, build) -> None:
    manifest = build(store, tmp_path, KEY, FILES, metadata={"flags": ["-O3"]})
    assert set(manifest.files) == set(FILES)
    assert manifest.size == sum(len(v) for v in FILES.values())
    assert store.get_manifest(manifest.digest) == manifest
    rec = store.get(KEY)
    assert rec is not None
    assert (rec.manifest_digest, rec.size) == (manifest.digest, manifest.size)
    assert rec.metadata == {"flags": ["-O3"]}
    assert rec.created_at.tzinfo == UTC

    out = store.materialize(KEY)
    assert out == store.root / "trees" / KEY
    for rel, data in FILES.items():
        f = out / rel
        assert f.read_bytes() == data
        assert f.stat().st_ino == store.blob_path(manifest.files[rel].digest).stat().st_ino
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temp dir left"
    # Reused when complete; rebuilt when damaged.
    assert store.materialize(KEY) == out
    (out / "README").unlink()
    assert (store.materialize(KEY) / "README").read_bytes() == b"hi"


def test_materialize_to_dest_and_refuses_foreign_dest(
    store: Store, tmp_path: Path, build, make_tree
) -> None:
    build(store, tmp_path, KEY, FILES)
    dest = store.materialize(KEY, tmp_path / "out")
    assert (dest / "model.onnx").read_bytes() == FILES["model.onnx"]
    other = make_tree(tmp_path / "other", {"x": b"1"})
    with pytest.raises(StoreError, match="exists"):
        store.materialize(KEY, other)
    assert (other / "x").exists()


def test_executable_mode_survives(store: Store, tmp_path: Path, make_tree) -> None:
    src = make_tree(tmp_path / "src", {"run.sh": b"#!/bin/sh\n"})
    (src / "run.sh").chmod(0o755)
    m = store.put_tree(src)
    assert m.files["run.sh"].mode == 0o755
    store.commit(KEY, m, model="m", target="t", backend="b", metadata={})
    assert os.access(store.materialize(KEY) / "run.sh", os.X_OK)


def test_put_tree_move_and_internal_symlinks(store: Store, make_tree) -> None:
    src = make_tree(store.tmpdir("b-"), {"a/w.bin": b"w" * 100})
    (src / "link.bin").symlink_to("a/w.bin")
    (src / "alias_dir").symlink_to("a")
    m = store.put_tree(src, move=True)
    assert set(m.files) == {"a/w.bin", "link.bin", "alias_dir/w.bin"}
    assert len({e.digest for e in m.files.values()}) == 1
    assert store.has_blob(m.files["link.bin"].digest)
    assert not (src / "a" / "w.bin").exists()


def test_put_tree_rejects_symlink_out_of_tree(store: Store, tmp_path: Path, make_tree) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s")
    src = make_tree(tmp_path / "src", {"ok": b"1"})
    (src / "leak").symlink_to(secret)
    with pytest.raises(StoreError, match="outside"):
        store.put_tree(src)
    assert not store.has_blob(hashlib.sha256(b"s").hexdigest())


def test_materialize_refuses_manifest_paths_escaping_dest(store: Store, tmp_path: Path) -> None:
    d = store.put_bytes(b"payload")
    entry = {"digest": d, "size": 7, "mode": 420}
    raw = canonical_json({"version": 1, "files": {"../escaped": entry}})
    md = store.put_bytes(raw)
    # Bypass Manifest validation the way a hostile remote could: write the row by hand.
    import sqlalchemy as sa

    from artifact_store import index

    with store._write() as conn:
        conn.execute(
            sa.insert(index.artifacts).values(
                key=KEY,
                manifest_digest=md,
                model="m",
                target="t",
                backend="b",
                created_at=_now(),
                last_used_at=_now(),
                size=7,
                metadata={},
            )
        )
    with pytest.raises(CorruptManifest):
        store.materialize(KEY, tmp_path / "dest" / "inner")
    assert not (tmp_path / "dest" / "escaped").exists()


def _now():  # noqa: ANN202
    from datetime import datetime

    return datetime.now(UTC)


def test_commit_is_idempotent_and_first_writer_wins(
    store: Store, tmp_path: Path, build, make_tree
) -> None:
    m1 = build(store, tmp_path, KEY, {"a": b"1"})
    again = store.commit(KEY, m1, model="m", target="cpu", backend="onnx", metadata={})
    assert again.manifest_digest == m1.digest
    m2 = store.put_tree(make_tree(tmp_path / "other", {"a": b"2"}))
    second = store.commit(KEY, m2, model="m", target="t", backend="b", metadata={})
    assert second.manifest_digest == m1.digest
    tree = store.materialize(KEY)
    assert (tree / "a").read_bytes() == b"1"
    replaced = store.commit(KEY, m2, model="m", target="t", backend="b", metadata={}, replace=True)
    assert replaced.manifest_digest == m2.digest
    assert len(store.list()) == 1
    # Same size, new content: the old tree must not be reused.
    assert (store.materialize(KEY) / "a").read_bytes() == b"2"


def test_commit_refuses_missing_blobs(store: Store, tmp_path: Path, make_tree) -> None:
    m = store.put_tree(make_tree(tmp_path / "src", {"a": b"1"}))
    with pytest.raises(CorruptObject, match="metadata"):
        store.commit(KEY, m, model="m", target="t", backend="b", metadata={"blobs": ["2" * 64]})
    p = store.blob_path(m.files["a"].digest)
    p.unlink()
    with pytest.raises(CorruptObject, match="missing"):
        store.commit(KEY, m, model="m", target="t", backend="b", metadata={})
    assert store.get(KEY) is None


def test_verify_catches_corrupt_and_missing_blobs(store: Store, tmp_path: Path, build) -> None:
    m = build(store, tmp_path, KEY, FILES)
    assert store.verify(KEY) == []
    _corrupt(store, m.files["model.onnx"].digest)
    store.blob_path(m.files["README"].digest).unlink()
    problems = store.verify(KEY)
    assert len(problems) == 2
    assert any("model.onnx" in p and ("corrupt" in p or "bytes" in p) for p in problems)
    assert any("README" in p and "missing" in p for p in problems)


# ---- lookup ------------------------------------------------------------------------------------


def test_resolve_exact_prefix_ambiguous_short_unknown(store: Store, tmp_path: Path, build) -> None:
    k1, k2, k3 = "abcd1111" + "0" * 56, "abcd2222" + "0" * 56, "ffff" + "0" * 60
    for k in (k1, k2, k3):
        build(store, tmp_path, k, {"f": k.encode()})
    assert store.resolve(k1).key == k1
    assert store.resolve("abcd1").key == k1
    assert store.resolve("FFFF").key == k3
    with pytest.raises(AmbiguousRef) as e:
        store.resolve("abcd")
    assert sorted(c.key for c in e.value.candidates) == [k1, k2]
    with pytest.raises(ArtifactNotFound, match="too short"):
        store.resolve("abc")
    with pytest.raises(ArtifactNotFound):
        store.resolve("1234")
    with pytest.raises(ArtifactNotFound):
        store.resolve("no-such-alias")


def test_aliases_tag_retag_untag_invalid(store: Store, tmp_path: Path, build) -> None:
    k1, k2 = "aaaa" + "0" * 60, "bbbb" + "0" * 60
    build(store, tmp_path, k1, {"f": b"1"})
    build(store, tmp_path, k2, {"f": b"2"})
    store.tag("prod", k1)
    assert store.resolve("prod").key == k1
    assert store.get(k1).aliases == ("prod",)  # type: ignore[union-attr]
    store.tag("prod", k2)
    assert store.resolve("prod").key == k2
    assert store.get(k1).aliases == ()  # type: ignore[union-attr]
    store.untag("prod")
    with pytest.raises(ArtifactNotFound):
        store.resolve("prod")
    with pytest.raises(ArtifactNotFound):
        store.untag("prod")
    for bad in ("", "-x", "a/b", "beef", "deadbeef00", "a b"):
        with pytest.raises(InvalidAlias):
            store.tag(bad, k1)
    store.tag("abc", k1)  # short hex is fine: too short to be a prefix
    with pytest.raises(ArtifactNotFound):
        store.tag("v1", "cccc" + "0" * 60)


def test_list_filters_newest_first_and_delete(store: Store, tmp_path: Path, build) -> None:
    k1, k2, k3 = (f"{i:04d}" + "0" * 60 for i in (1, 2, 3))
    build(store, tmp_path, k1, {"f": b"1"}, model="bert", backend="onnx")
    build(store, tmp_path, k2, {"f": b"2"}, model="bert", backend="trt")
    build(store, tmp_path, k3, {"f": b"3"}, model="gpt2", backend="onnx")
    assert [r.key for r in store.list()] == [k3, k2, k1]
    assert [r.key for r in store.list(model="bert")] == [k2, k1]
    assert [r.key for r in store.list(model="bert", backend="onnx")] == [k1]
    store.tag("best", k1)
    store.delete(k1)
    assert store.get(k1) is None
    with pytest.raises(ArtifactNotFound):
        store.resolve("best")
    with pytest.raises(ArtifactNotFound):
        store.delete(k1)


def test_touch_moves_last_used(store: Store, tmp_path: Path, build) -> None:
    build(store, tmp_path, KEY, {"f": b"1"})
    before = store.get(KEY).last_used_at  # type: ignore[union-attr]
    store.touch(KEY)
    assert store.get(KEY).last_used_at > before  # type: ignore[union-attr]
    with pytest.raises(ArtifactNotFound):
        store.touch("nope")


# ---- processes: locks, crashes, races ----------------------------------------------------------

CTX = mp.get_context("fork")


def _hold_lock(root: str, ready: mp.Event) -> None:  # type: ignore[valid-type]
    s = Store(root)
    with s.lock(KEY):
        ready.set()
        signal.pause()


def test_lock_times_out_while_held_and_survives_sigkill(store: Store) -> None:
    ready = CTX.Event()
    p = CTX.Process(target=_hold_lock, args=(str(store.root), ready))
    p.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockTimeout):
            with store.lock(KEY, timeout=0.2):
                pass
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
    assert p.exitcode == -signal.SIGKILL
    with store.lock(KEY, timeout=2):  # the kernel dropped the dead holder's flock
        pass


def _crash_before_commit(root: str, src: str) -> None:
    s = Store(root)
    s.put_tree(src)
    os.kill(os.getpid(), signal.SIGKILL)


def test_crash_before_commit_leaves_no_row_and_gc_cleans(
    store: Store, tmp_path: Path, make_tree
) -> None:
    src = make_tree(tmp_path / "src", {"a": b"orphan"})
    p = CTX.Process(target=_crash_before_commit, args=(str(store.root), str(src)))
    p.start()
    p.join(10)
    assert p.exitcode == -signal.SIGKILL
    assert store.list() == []
    orphan = hashlib.sha256(b"orphan").hexdigest()
    assert store.has_blob(orphan)
    assert store.gc(grace=0).blobs_removed == 2  # the file and its manifest
    assert not store.has_blob(orphan)


def _commit_same(root: str, src: str, barrier: mp.Barrier, q: mp.Queue) -> None:  # type: ignore[valid-type]
    try:
        s = Store(root)
        barrier.wait(5)
        m = s.put_tree(src)
        q.put(s.commit(KEY, m, model="m", target="t", backend="b", metadata={}).manifest_digest)
    except BaseException as e:
        q.put(repr(e))


def test_concurrent_put_and_commit_of_same_key_both_succeed(
    store: Store, tmp_path: Path, make_tree
) -> None:
    src = make_tree(tmp_path / "src", {f"f{i}": bytes([i]) * 10_000 for i in range(20)})
    barrier, q = CTX.Barrier(4), CTX.Queue()
    args = (str(store.root), str(src), barrier, q)
    procs = [CTX.Process(target=_commit_same, args=args) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert len(set(results)) == 1 and len(results[0]) == 64, results
    assert store.verify(KEY) == []


def test_materialize_does_not_replace_a_tree_another_caller_just_laid_out(
    store: Store, tmp_path: Path, build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller whose first look found no tree, while another caller renamed a complete one into
    place, must not take that fresh tree for a stale one and remove it under its reader."""
    import artifact_store.store as store_mod

    build(store, tmp_path, KEY, FILES)
    tree = store.materialize(KEY)
    os.chmod(tree, 0o755)
    (tree / ".a-reader-is-here").write_bytes(b"")  # inode numbers are reused: mark this tree
    real = store_mod.tree_complete
    looks: list[bool] = []

    def first_look_missed(*args: object) -> bool:
        looks.append(True)
        return False if len(looks) == 1 else real(*args)

    monkeypatch.setattr(store_mod, "tree_complete", first_look_missed)
    assert store.materialize(KEY) == tree
    assert (tree / ".a-reader-is-here").exists(), "the complete tree was removed and laid anew"


def _materialize(root: str, barrier: mp.Barrier, q: mp.Queue) -> None:  # type: ignore[valid-type]
    try:
        s = Store(root)
        barrier.wait(5)
        out = s.materialize(KEY)
        q.put(sorted(p.name for p in out.iterdir()))
    except BaseException as e:
        q.put(repr(e))


def test_concurrent_materialize_all_see_complete_tree(store: Store, tmp_path: Path, build) -> None:
    files = {f"f{i}": bytes([i]) * 100 for i in range(30)}
    build(store, tmp_path, KEY, files)
    barrier, q = CTX.Barrier(4), CTX.Queue()
    procs = [CTX.Process(target=_materialize, args=(str(store.root), barrier, q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert results == [sorted(files)] * 4
    leftovers = [p.name for p in (store.root / "trees").iterdir() if p.name != KEY]
    assert leftovers == []
