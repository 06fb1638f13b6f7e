"""Streamed listings: ``Store.iter_list`` yields what ``Store.list`` returns, a batch at a time,
and leaves out the targets it is told to (``ls`` hides compiler caches that way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact_store import Store, queries

KEYS = [f"{i:02x}" + "c" * 62 for i in range(7)]


@pytest.fixture
def filled(store: Store, tmp_path: Path, build) -> Store:  # noqa: ANN001
    for i, key in enumerate(KEYS):
        target = "compiler-cache" if i == 3 else f"t{i % 2}"
        meta = {"profile": "p", "tool": {"version": str(i)}, "argv": ["x"] * 10}
        build(store, tmp_path, key, {"f": bytes([i])}, target=target, metadata=meta)
    store.tag("best", KEYS[2])
    store.tag("also", KEYS[2])
    store.add_use(KEYS[4], "other", "t9")
    return store


@pytest.mark.parametrize("summary", [False, True])
def test_iter_list_yields_what_list_returns_across_batches(
    filled: Store, monkeypatch: pytest.MonkeyPatch, summary: bool
) -> None:
    monkeypatch.setattr(queries, "STREAM_BATCH", 2)  # 7 artifacts: four batches
    for filters in ({}, {"limit": 3}, {"target": "t1"}, {"model": "other"}, {"backend": "x"}):
        expected = filled.list(**filters, summary=summary)
        assert list(filled.iter_list(**filters, summary=summary)) == expected, filters
    assert [r.aliases for r in filled.iter_list() if r.key == KEYS[2]] == [("also", "best")]


def test_iter_list_reads_one_batch_before_its_first_record(
    filled: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first record comes after one batch is read, not after the whole listing: the
    records built so far are counted where they are built."""
    monkeypatch.setattr(queries, "STREAM_BATCH", 2)
    built: list[str] = []
    real = queries.ArtifactRecord

    def counting(**kw: object) -> object:
        built.append(str(kw["key"]))
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(queries, "ArtifactRecord", counting)
    records = filled.iter_list()
    first = next(records)
    assert first.key == KEYS[-1]  # newest first
    assert len(built) == 2  # one batch of 2, not all 7
    rest = list(records)
    assert len(built) == len(KEYS) == 1 + len(rest)


def test_excluded_targets_are_left_out_of_the_listing_and_its_count(filled: Store) -> None:
    shown = [r.key for r in filled.iter_list(exclude_targets=("compiler-cache",))]
    assert KEYS[3] not in shown and len(shown) == len(KEYS) - 1
    assert filled.count(exclude_targets=("compiler-cache",)) == len(KEYS) - 1
    assert filled.count() == len(KEYS)
    only_t0 = filled.count(target="t0", exclude_targets=("compiler-cache",))
    assert only_t0 == filled.count(target="t0")
