"""A full disk: every store write says DiskFull, reads keep working.

Where the test may mount a small tmpfs (root), the disk is really full; elsewhere those tests
skip, and the monkeypatched ones still feed ENOSPC / SQLITE_FULL to each write path.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifact_store import DiskFull, Store


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)  # noqa: S603, S607


def fill(disk: Path) -> None:
    """Write until the filesystem says ENOSPC."""
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def _stored(root: Path, tmp_path: Path, make_tree) -> None:  # noqa: ANN001
    with Store(root) as store:
        manifest = store.put_tree(make_tree(tmp_path / "src", {"model.bin": b"w" * 5000}))
        store.commit("k1", manifest, model="m", target="t", backend="b", metadata={})
        store.materialize("k1")


def test_blob_write_on_a_full_disk_is_disk_full(small_disk: Path, tmp_path: Path) -> None:
    with Store(small_disk / "store") as store:
        fill(small_disk)
        with pytest.raises(DiskFull) as info:
            store.put_bytes(b"x" * 100_000)
    assert info.value.needed == 100_000 and info.value.free == 0
    assert str(small_disk / "store" / "objects") in str(info.value)


def test_tree_ingest_on_a_full_disk_is_disk_full(
    small_disk: Path, tmp_path: Path, make_tree
) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": b"a" * 200_000, "b.bin": b"b" * 10})
    with Store(small_disk / "store") as store:
        fill(small_disk)
        with pytest.raises(DiskFull) as info:
            store.put_tree(src)
    assert info.value.needed == 200_010 and info.value.free == 0


@pytest.mark.sqlite_only("a SQLite index on a full disk")
def test_reads_work_read_only_on_a_full_disk(small_disk: Path, tmp_path: Path, make_tree) -> None:
    root = small_disk / "store"
    _stored(root, tmp_path, make_tree)
    fill(small_disk)
    with Store(root, read_only=True) as store:
        assert [r.key for r in store.list()] == ["k1"]
        assert store.resolve("k1").key == "k1" and store.get("k1") is not None
        assert store.check("k1") == [] and store.verify("k1") == []
        assert (store.materialize("k1") / "model.bin").read_bytes() == b"w" * 5000
    with Store(root) as store, pytest.raises(DiskFull, match="index"):
        store.tag("main", "k1")  # a write: a clear DiskFull, not "internal error"


@pytest.mark.sqlite_only("the disk-full error of SQLite")
def test_index_write_full_is_disk_full(
    store: Store, tmp_path: Path, make_tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artifact_store import index

    manifest = store.put_tree(make_tree(tmp_path / "src", {"f": b"x"}))

    def full(engine):  # noqa: ANN001, ANN202
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(index, "write_connection", full)
    with pytest.raises(DiskFull, match="writing the index"):
        store.commit("k1", manifest, model="m", target="t", backend="b", metadata={})


def test_blob_enospc_is_disk_full(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from artifact_store import blobs

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(blobs.os, "fsync", no_space)
    with pytest.raises(DiskFull) as info:
        store.put_bytes(b"data")
    assert info.value.needed == 4 and info.value.free is not None
    assert not list((store.root / "tmp").iterdir())  # the temp file is gone


@pytest.mark.sqlite_only("a SQLite index on a read-only filesystem")
def test_reads_work_on_a_store_mounted_read_only(
    small_disk: Path, tmp_path: Path, make_tree
) -> None:
    """A serving host may mount a shared store read-only: its locks are taken, not written."""
    root = small_disk / "store"
    _stored(root, tmp_path, make_tree)
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["mount", "-o", "remount,ro", str(small_disk)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
    with Store(root, read_only=True) as store:
        assert store.check("k1") == []
        assert (store.materialize("k1") / "model.bin").read_bytes() == b"w" * 5000
        with store.pin("k1"):
            pass
