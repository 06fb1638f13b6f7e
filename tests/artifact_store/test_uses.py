"""Artifact uses: every (model, target) an artifact serves, beyond the build that made it."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from artifact_store import ArtifactNotFound, Store, index

K1, K2, K3 = (f"{i:04d}" + "0" * 60 for i in (1, 2, 3))


def test_commit_records_the_use_also_when_the_first_writer_wins(
    store: Store, tmp_path: Path, build
) -> None:
    m = build(store, tmp_path, K1, {"a": b"1"}, model="bert", target="cpu")
    rec = store.get(K1)
    assert rec is not None and rec.uses == (("bert", "cpu"),)
    # A second committer for another target: its row is not written, its use is.
    again = store.commit(K1, m, model="bert", target="onnx", backend="x", metadata={})
    assert (again.model, again.target, again.backend) == ("bert", "cpu", "onnx")
    assert again.uses == (("bert", "cpu"), ("bert", "onnx"))
    # Re-committing an existing use is a no-op.
    assert store.commit(K1, m, model="bert", target="cpu", backend="x", metadata={}) == again


def test_add_use_is_idempotent_and_refuses_unknown_keys(
    store: Store, tmp_path: Path, build
) -> None:
    build(store, tmp_path, K1, {"a": b"1"}, model="bert", target="cpu")
    assert not store.has_use(K1, "bert", "onnx")
    assert store.add_use(K1, "bert", "onnx") is True
    assert store.add_use(K1, "bert", "onnx") is False
    assert store.add_use(K1, "bert", "cpu") is False  # the committer's own use
    assert store.has_use(K1, "bert", "onnx")
    rec = store.get(K1)
    assert rec is not None and rec.uses == (("bert", "cpu"), ("bert", "onnx"))
    assert (rec.model, rec.target) == ("bert", "cpu")  # still the first builder
    with pytest.raises(ArtifactNotFound):
        store.add_use(K2, "bert", "cpu")
    assert not store.has_use(K2, "bert", "cpu")


def test_list_filters_through_uses(store: Store, tmp_path: Path, build) -> None:
    build(store, tmp_path, K1, {"f": b"1"}, model="bert", target="cpu", backend="onnx")
    build(store, tmp_path, K2, {"f": b"2"}, model="bert", target="cpu", backend="trt")
    build(store, tmp_path, K3, {"f": b"3"}, model="gpt2", target="gpu", backend="onnx")
    # K1 is a shared export that the "onnx" target of bert (and of gpt2) also uses.
    store.add_use(K1, "bert", "onnx")
    store.add_use(K1, "gpt2", "onnx")

    def keys(**kw: str) -> list[str]:
        return [r.key for r in store.list(**kw)]

    assert keys(target="onnx") == [K1]  # listed once, though two uses match
    assert keys(model="gpt2") == [K3, K1]  # newest first
    assert keys(model="gpt2", target="onnx") == [K1]
    assert keys(model="gpt2", target="cpu") == []  # both filters must match the same use
    assert keys(model="bert", target="cpu", backend="trt") == [K2]
    assert keys(target="onnx", backend="trt") == []
    assert keys() == [K3, K2, K1]


def test_delete_removes_uses_and_the_foreign_key_cascades(
    store: Store, tmp_path: Path, build
) -> None:
    build(store, tmp_path, K1, {"f": b"1"})
    build(store, tmp_path, K2, {"f": b"2"})
    store.add_use(K1, "m", "onnx")
    store.delete(K1)
    assert store.list(target="onnx") == [] and not store.has_use(K1, "m", "cpu")

    def n_uses(key: str) -> int:
        u = index.artifact_uses
        with store._engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).where(u.c.key == key)).scalar_one()

    assert n_uses(K1) == 0
    # The schema cascades by itself too (a delete that is not Store.delete's).
    assert n_uses(K2) == 1
    with store._write() as conn:
        conn.execute(index.artifacts.delete().where(index.artifacts.c.key == K2))
    assert n_uses(K2) == 0


def test_gc_evicts_an_artifact_with_several_uses(store: Store, tmp_path: Path, build) -> None:
    build(store, tmp_path, K1, {"f": b"1" * 100})
    store.add_use(K1, "m", "onnx")
    report = store.gc(max_size=0, grace=0)
    assert report.evicted_keys == (K1,) and report.blobs_removed == 2  # file + manifest
    assert store.list() == [] and not store.has_use(K1, "m", "onnx")


@pytest.mark.sqlite_only("an old SQLite file upgraded")
def test_a_0001_database_is_upgraded_and_backfilled(tmp_path: Path) -> None:
    from alembic import command

    root = tmp_path / "s"
    root.mkdir()
    db = root / "index.sqlite"
    engine = index.create_engine(f"sqlite:///{db}")
    try:
        with index.write_connection(engine) as conn:
            command.upgrade(index.alembic_config(conn), "0001_initial")
            conn.commit()
        assert index.current_revision(engine) == "0001_initial"
    finally:
        engine.dispose()
    # A row as the 0001 code wrote it (naive UTC text, JSON text).
    when = "2024-01-02 03:04:05.000006"
    with sqlite3.connect(db) as raw:
        row = (K1, "0" * 64, "bert", "cpu", "onnx", when, when, 0, json.dumps({}))
        raw.execute("INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    raw.close()

    with Store(root) as s:
        assert s._reader is None  # an old revision goes through SQLAlchemy, which migrates
        rec = s.get(K1)
        assert rec is not None and rec.uses == (("bert", "cpu"),)
        assert [r.key for r in s.list(target="cpu")] == [K1]
        u = index.artifact_uses
        with s._engine.connect() as conn:
            first = conn.execute(sa.select(u.c.first_used_at)).scalar_one()
        assert first == datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)  # the creation time
    with Store(root) as s:  # now at head: the fast path, reading the backfilled use
        assert s._reader is not None
        assert s.has_use(K1, "bert", "cpu")
        fast = s.get(K1)
        assert fast is not None and fast.uses == (("bert", "cpu"),)
