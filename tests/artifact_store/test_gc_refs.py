"""gc's snapshot from ``artifact_blobs``, and artifacts committed before it."""

from __future__ import annotations

from pathlib import Path

from artifact_store import Store, index

K1, K2 = "c1" * 32, "c2" * 32


def test_commit_records_every_blob_an_artifact_keeps_alive(
    store: Store, tmp_path: Path, build
) -> None:
    log = store.put_bytes(b"the build log")
    manifest = build(store, tmp_path, K1, {"a": b"1" * 10, "b": b"22"}, metadata={"blobs": [log]})
    rows, refs = store.gc_index()
    assert [r[0] for r in rows] == [K1] and rows[0][1] == manifest.digest
    expected = {manifest.digest, log, *(e.digest for e in manifest.files.values())}
    assert {d for d, _ in refs[K1]} == expected
    assert dict(refs[K1])[log] == len(b"the build log")
    store.delete(K1)
    assert store.gc_index() == ([], {})


def test_gc_keeps_the_blobs_of_an_artifact_committed_before_0004(
    store: Store, tmp_path: Path, build, age
) -> None:
    """No artifact_blobs rows (an older store): gc reads its manifest, as it used to."""
    old = build(store, tmp_path, K1, {"a": b"old" * 10})
    build(store, tmp_path, K2, {"b": b"new" * 10})
    with store._write() as conn:
        conn.execute(index.artifact_blobs.delete().where(index.artifact_blobs.c.key == K1))
    orphan = store.put_bytes(b"nobody's")
    for _, path in store.iter_blobs():
        age(path)
    report = store.gc(grace=0)
    assert report.blobs_removed == 1 and not store.has_blob(orphan)
    assert store.has_blob(old.digest) and store.verify(K1) == [] and store.verify(K2) == []
