"""The integrity check: stat records, re-hash on a mismatch, quarantine, marks."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from artifact_store import CorruptObject, Store, index

K1, K2 = ("a1" + "0" * 62, "b2" + "0" * 62)


def _flip(path: Path, *, keep_mtime: bool = False) -> None:
    st = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 1]))
    os.chmod(path, 0o444)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_commit_records_each_blob_and_a_healthy_check_is_silent(
    store: Store, tmp_path: Path, build
) -> None:
    m = build(store, tmp_path, K1, {"a": b"1" * 10, "b": b"2" * 20})
    digests = [m.digest, *(e.digest for e in m.files.values())]
    recorded = store.blob_stats(digests)
    assert set(recorded) == set(digests)
    st = store.blob_path(m.files["a"].digest).stat()
    assert recorded[m.files["a"].digest] == (st.st_ino, st.st_mtime_ns, st.st_size)
    assert store.check(K1) == []


def test_a_touched_but_intact_blob_is_rehashed_once_and_kept(
    store: Store, tmp_path: Path, build
) -> None:
    m = build(store, tmp_path, K1, {"a": b"1" * 10})
    blob = store.blob_path(m.files["a"].digest)
    os.utime(blob, (1_000_000_000, 1_000_000_000))  # a backup restore, a careless touch
    assert store.check(K1) == []
    assert (
        store.blob_stats([m.files["a"].digest])[m.files["a"].digest][1] == blob.stat().st_mtime_ns
    )
    assert not (store.root / "quarantine").exists()


def test_a_damaged_blob_is_quarantined_and_every_user_marked(
    store: Store, tmp_path: Path, build
) -> None:
    m1 = build(store, tmp_path, K1, {"shared": b"s" * 50, "own": b"1"})
    build(store, tmp_path, K2, {"shared": b"s" * 50, "own": b"2"}, target="gpu")
    store.materialize(K1)
    blob = store.blob_path(m1.files["shared"].digest)
    _flip(blob)
    problems = store.check(K1)
    assert [p.path for p in problems] == ["shared"]
    assert "does not match" in str(problems[0]) and m1.files["shared"].digest in str(problems[0])
    assert not blob.exists() and len(list((store.root / "quarantine").iterdir())) == 1
    assert not (store.root / "trees" / K1).exists()  # it held a link to the bad inode
    for key in (K1, K2):  # K2 shares the blob: marked too, without being checked itself
        rec = store.get(key)
        assert rec is not None and rec.corrupt and "shared" in (rec.problem or "")
        assert store.check(key)  # never healthy until rebuilt
    with Store(store.root) as again:  # the marks are in the index, on both read paths
        assert again.get(K2).state == "corrupt"  # type: ignore[union-attr]


def test_marking_reads_only_the_manifests_of_artifacts_using_the_blob(
    store: Store, tmp_path: Path, build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index's blob rows say who uses a damaged blob; an artifact without them (committed
    before migration 0004) is still found through its manifest."""
    m1 = build(store, tmp_path, K1, {"shared": b"s" * 50, "own": b"1"})
    m2 = build(store, tmp_path, K2, {"shared": b"s" * 50, "own": b"2"}, target="gpu")
    k3 = "c3" + "0" * 62
    m3 = build(store, tmp_path, k3, {"other": b"3"}, target="npu")
    with store._write() as conn:  # K2 as an artifact from before migration 0004
        conn.execute(index.artifact_blobs.delete().where(index.artifact_blobs.c.key == K2))
    read: list[str] = []
    get_manifest = store.get_manifest

    def counting(digest: str):  # noqa: ANN202
        read.append(digest)
        return get_manifest(digest)

    monkeypatch.setattr(store, "get_manifest", counting)
    _flip(store.blob_path(m1.files["shared"].digest))
    assert [p.path for p in store.check(K1)] == ["shared"]
    assert m3.digest not in read and m2.digest in read
    assert store.get(K2).corrupt and not store.get(k3).corrupt  # type: ignore[union-attr]


def test_a_rebuild_commit_clears_the_mark(store: Store, tmp_path: Path, build) -> None:
    m = build(store, tmp_path, K1, {"a": b"1" * 10})
    _flip(store.blob_path(m.files["a"].digest))
    assert store.check(K1)
    fresh = store.put_tree(tmp_path / f"src-{K1}")
    rec = store.commit(
        K1, fresh, model="m", target="cpu", backend="onnx", metadata={}, replace=True
    )
    assert rec.state == "ok" and rec.problem is None and store.check(K1) == []


def test_commit_reusing_a_damaged_blob_quarantines_it(store: Store, tmp_path: Path, build) -> None:
    m = build(store, tmp_path, K1, {"a": b"1" * 10})
    _flip(store.blob_path(m.files["a"].digest))
    try:
        store.commit(K2, m, model="m", target="t", backend="b", metadata={})
    except CorruptObject as exc:
        assert "quarantine" in str(exc)
    else:
        raise AssertionError("a damaged blob was committed into a new artifact")
    assert store.get(K2) is None and store.get(K1).corrupt  # type: ignore[union-attr]


def test_verify_without_repair_writes_nothing(store: Store, tmp_path: Path, build) -> None:
    m = build(store, tmp_path, K1, {"a": b"1" * 10})
    _flip(store.blob_path(m.files["a"].digest), keep_mtime=True)
    assert store.check(K1) == []  # the documented limit of the cheap check
    assert store.verify(K1) and store.blob_path(m.files["a"].digest).exists()
    assert not store.get(K1).corrupt  # type: ignore[union-attr]
    assert store.verify(K1, repair=True) and not store.blob_path(m.files["a"].digest).exists()
    assert store.get(K1).corrupt  # type: ignore[union-attr]


@pytest.mark.sqlite_only("the sqlite3 fast path")
def test_the_cheap_check_does_not_import_sqlalchemy(store: Store, tmp_path: Path, build) -> None:
    build(store, tmp_path, K1, {"a": b"1" * 10})
    code = textwrap.dedent(
        f"""
        import sys
        import artifact_store
        s = artifact_store.Store({str(store.root)!r})
        assert s.check({K1!r}) == []
        assert "sqlalchemy" not in sys.modules, "the hit's check must take the sqlite3 path"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.sqlite_only("an old SQLite file upgraded")
def test_a_0002_database_upgrades_keeping_aliases_and_uses(tmp_path: Path) -> None:
    """0003 adds columns in place: on SQLite a table rebuild would cascade-delete them."""
    from alembic import command

    root = tmp_path / "s"
    root.mkdir()
    db = root / "index.sqlite"
    engine = index.create_engine(f"sqlite:///{db}")
    try:
        with index.write_connection(engine) as conn:
            command.upgrade(index.alembic_config(conn), "0002_artifact_uses")
            conn.commit()
    finally:
        engine.dispose()
    when = "2024-01-02 03:04:05.000006"
    with sqlite3.connect(db) as raw:
        row = (K1, "0" * 64, "bert", "cpu", "onnx", when, when, 0, "{}")
        raw.execute("INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        raw.execute("INSERT INTO aliases VALUES ('main', ?, ?)", (K1, when))
        raw.execute("INSERT INTO artifact_uses VALUES (?, 'bert', 'gpu', ?)", (K1, when))
    raw.close()
    with Store(root) as s:
        rec = s.get(K1)
        assert rec is not None and rec.state == "ok" and rec.aliases == ("main",)
        assert ("bert", "gpu") in rec.uses
    with Store(root) as s:
        assert s._reader is not None and s.get(K1).aliases == ("main",)  # type: ignore[union-attr]


@pytest.mark.sqlite_only("the store's own index file, from before local.sqlite")
def test_stats_and_marks_an_older_version_kept_in_its_own_index_carry_over(
    store: Store, tmp_path: Path, build
) -> None:
    """Before local.sqlite, blob stats and marks were index rows. In the store's own index
    file they are this store's facts: copied once, so the cheap check keeps its baseline."""
    m = build(store, tmp_path, K1, {"a": b"1" * 10})
    build(store, tmp_path, K2, {"b": b"2" * 10}, target="gpu")
    digest = m.files["a"].digest
    recorded = store.blob_stats([digest])[digest]
    store.close()
    (store.root / "local.sqlite").unlink()  # as an older version left the store
    for suffix in ("-wal", "-shm"):
        (store.root / f"local.sqlite{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(store.root / "index.sqlite") as raw:
        raw.execute("INSERT INTO blob_stats VALUES (?, ?, ?, ?)", (digest, *recorded))
        raw.execute("UPDATE artifacts SET state = 'corrupt', problem = 'old' WHERE key = ?", (K2,))
    raw.close()
    with Store(store.root) as again:
        assert again.get(K2).corrupt  # type: ignore[union-attr]
        assert again.check(K2)  # still refused until rebuilt or re-hashed whole
        assert again.blob_stats([digest]) == {digest: recorded}
        _flip(again.blob_path(digest))  # the carried-over baseline sees the write
        assert [p.path for p in again.check(K1)] == ["a"]
