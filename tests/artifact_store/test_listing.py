"""Listing and id prefixes at scale: limits and filters in SQL, prefixes as a key
range, and the sqlite3 fast path answering exactly as SQLAlchemy does."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact_store import AmbiguousRef, ArtifactNotFound, Store, StoreError
from artifact_store.reader import SUMMARY_KEYS

KEYS = ["abc00" + "0" * 59, "abc01" + "0" * 59, "abd0" + "1" * 60, "ab" + "f" * 62]


@pytest.fixture
def filled(store: Store, tmp_path: Path, build) -> Store:
    for i, key in enumerate(KEYS):
        build(store, tmp_path, key, {"f": bytes([i])}, target=f"t{i % 2}", backend=f"b{i % 2}")
    store.tag("best", KEYS[2])
    return store


def test_list_limit_and_count_filter_in_the_index(filled: Store) -> None:
    newest = [r.key for r in filled.list()]
    assert newest == list(reversed(KEYS))
    assert [r.key for r in filled.list(limit=2)] == newest[:2]
    assert [r.key for r in filled.list(target="t0", limit=1)] == [KEYS[2]]
    assert filled.count() == 4 and filled.count(backend="b1") == 2
    assert filled.count(model="m", target="t1") == 2 and filled.count(model="x") == 0


def test_a_summary_listing_carries_only_the_shown_metadata(
    store: Store, tmp_path: Path, build
) -> None:
    meta = {"profile": "p", "stage": "compile", "tool": {"version": "1"}, "argv": ["x"] * 50}
    build(store, tmp_path, KEYS[0], {"f": b"1"}, metadata={**meta, "toolchain": {"a": [1]}})
    build(store, tmp_path, KEYS[1], {"f": b"2"}, metadata={"blobs": []})
    full = {r.key: r for r in store.list()}
    for rec in store.list(summary=True):
        kept = {k: v for k, v in full[rec.key].metadata.items() if k in SUMMARY_KEYS}
        assert rec.metadata == kept
        assert rec == full[rec.key].__class__(**{**full[rec.key].__dict__, "metadata": kept})


def test_prefix_is_a_key_range(filled: Store) -> None:
    assert filled.resolve("abd0").key == KEYS[2]
    assert filled.resolve("ABD0").key == KEYS[2]  # hex is case-insensitive, as before
    assert filled.resolve("abff").key == KEYS[3]  # the top of a range ("f" then "g")
    with pytest.raises(AmbiguousRef) as amb:
        filled.resolve("abc0")
    assert {c.key for c in amb.value.candidates} == set(KEYS[:2])
    with pytest.raises(ArtifactNotFound):
        filled.resolve("abe0")
    with pytest.raises(ArtifactNotFound, match="too short"):
        filled.resolve("ab")
    assert filled.resolve("best").key == KEYS[2]


@pytest.mark.sqlite_only("compares the sqlite3 fast path with SQLAlchemy on one file")
def test_fast_list_count_and_resolve_equal_sqlalchemy(filled: Store) -> None:
    root = filled.root
    fast = Store(root, read_only=True)
    slow = Store(root, index_url=f"sqlite+pysqlite:///{root / 'index.sqlite'}")
    try:
        assert fast._reader is not None and slow._reader is None
        for kw in ({}, {"target": "t1"}, {"backend": "b0"}, {"model": "m", "target": "t0"}):
            assert fast.list(**kw) == slow.list(**kw)
            assert fast.list(limit=1, **kw) == slow.list(limit=1, **kw)
            assert fast.count(**kw) == slow.count(**kw)
            assert fast.list(summary=True, **kw) == slow.list(summary=True, **kw)
        for ref in ("abd0", "best", KEYS[0], "abff"):
            assert fast.resolve(ref) == slow.resolve(ref)
        for ref in ("abc0", "abe0", "ab", "nope"):
            with pytest.raises(StoreError) as a:
                fast.resolve(ref)
            with pytest.raises(StoreError) as b:
                slow.resolve(ref)
            assert (type(a.value), str(a.value)) == (type(b.value), str(b.value))
    finally:
        fast.close()
        slow.close()
