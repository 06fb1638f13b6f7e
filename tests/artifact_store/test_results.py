"""Action results: a key's output digest without its files, in the index and on a remote.

A chain here is two artifacts: ``UP`` and ``DOWN`` built from it (``parents: [UP]`` and, as
rmbuild records it, ``action_key.inputs.model`` = UP's manifest digest).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artifact_store import Store
from artifact_store.results import ActionResult

UP = "aa" * 32
DOWN = "bb" * 32
FIRST = "cc" * 32  # a stage before UP, for three-stage chains


def _tree(store: Store, tmp_path: Path, name: str):  # noqa: ANN202
    src = tmp_path / f"src-{name}"
    src.mkdir()
    (src / "model.bin").write_bytes(os.urandom(4096))
    return store.put_tree(src)


def _chain(store: Store, tmp_path: Path, *, first: bool = False) -> dict[str, str]:
    """UP (after FIRST, if ``first``) and DOWN committed in ``store``; their manifest digests."""
    digests: dict[str, str] = {}
    parent: str | None = None
    for key in ([FIRST] if first else []) + [UP, DOWN]:
        manifest = _tree(store, tmp_path, key[:4])
        meta: dict = {"parents": [parent] if parent else []}
        if parent:
            meta["action_key"] = {"inputs": {"model": digests[parent]}}
        store.commit(key, manifest, model="tiny", target="cpu", backend="b", metadata=meta)
        digests[key] = manifest.digest
        parent = key
    return digests


def _blob_count(store: Store) -> int:
    return sum(1 for _ in store.iter_blobs())


def _has_files_of(store: Store, other: Store, key: str) -> bool:
    record = other.get(key)
    assert record is not None
    digests = [
        record.manifest_digest,
        *(e.digest for e in other.get_manifest(record.manifest_digest).files.values()),
    ]
    return any(store.has_blob(d) for d in digests)


def test_a_key_s_result_is_its_artifact_row_until_recorded(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        digests = _chain(store, tmp_path)
        assert store.result(DOWN) == ActionResult(DOWN, digests[DOWN], (UP,))
        assert store.result("dd" * 32) is None


def test_the_first_result_wins_and_a_rebuild_re_points_it(tmp_path: Path) -> None:
    other, again = "11" * 32, "22" * 32
    with Store(tmp_path / "s") as store:
        assert store.record_results([ActionResult(UP, other)]) == 1
        assert store.record_results([ActionResult(UP, again)]) == 0
        assert store.result(UP).manifest_digest == other
        store.record_results([ActionResult(UP, again)], replace=True)
        assert store.result(UP).manifest_digest == again


def test_a_result_outlives_its_evicted_artifact(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        digests = _chain(store, tmp_path)
        store.record_results([ActionResult(UP, digests[UP])])
        store.delete(UP)
        assert store.get(UP) is None
        assert store.result(UP).manifest_digest == digests[UP]


@pytest.mark.sqlite_only("the stdlib-sqlite3 read path against SQLAlchemy's")
def test_the_fast_read_path_gives_what_sqlalchemy_gives(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        digests = _chain(store, tmp_path)
        store.record_results([ActionResult(FIRST, digests[UP], (UP,))])
    with Store(tmp_path / "s") as fast:
        assert fast._reader is not None
        got = [fast.result(k) for k in (UP, DOWN, FIRST, "dd" * 32)]
        fast._reader.close()
        fast._reader = None  # the SQLAlchemy path
        assert [fast.result(k) for k in (UP, DOWN, FIRST, "dd" * 32)] == got
        assert got[2] == ActionResult(FIRST, digests[UP], (UP,))


@pytest.mark.sqlite_only("an index written by the previous schema, migrated")
def test_the_migration_gives_existing_artifacts_their_results(tmp_path: Path) -> None:
    from artifact_store import index

    with Store(tmp_path / "s") as store:
        digests = _chain(store, tmp_path)
    engine = index.create_engine(f"sqlite:///{tmp_path / 's' / 'index.sqlite'}")
    try:
        with engine.begin() as conn:  # back to 0004: the table and its rows gone
            conn.exec_driver_sql("DROP TABLE action_results")
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0004_failures_refs'")
        index.run_migrations(engine)
        with engine.connect() as conn:
            rows = dict(
                conn.exec_driver_sql("SELECT key, manifest_digest FROM action_results").all()
            )
    finally:
        engine.dispose()
    assert rows == {UP: digests[UP], DOWN: digests[DOWN]}


# ----------------------------------------------------------------------------- a remote


@pytest.fixture
def remote_url(tmp_path: Path) -> str:
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    return f"file://{tmp_path / 'remote'}"


def test_pull_brings_the_chain_s_results_not_its_files(tmp_path: Path, remote_url: str) -> None:
    from artifact_store.remote import Remote

    remote = Remote(remote_url)
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        digests = _chain(a, tmp_path, first=True)
        remote.push(a, [DOWN])
        remote.pull(b, DOWN)
        assert b.result(UP) == ActionResult(UP, digests[UP], (FIRST,))
        assert b.result(FIRST) == ActionResult(FIRST, digests[FIRST], ())
        assert b.get(UP) is None and b.get(FIRST) is None
        assert not _has_files_of(b, a, UP) and not _has_files_of(b, a, FIRST)
        assert _blob_count(b) == 2  # DOWN's manifest and its one file


def test_a_store_holding_only_the_final_artifact_passes_its_chain_on(
    tmp_path: Path, remote_url: str
) -> None:
    """B pulled DOWN alone, then pushes it to another remote: the upstream results go too
    (``results/``), so C, pulling from there, can still key DOWN."""
    from artifact_store.remote import Remote

    first, second = Remote(remote_url), Remote(f"file://{tmp_path / 'second'}")
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b, Store(tmp_path / "c") as c:
        digests = _chain(a, tmp_path, first=True)
        first.push(a, [DOWN])
        first.pull(b, DOWN)
        assert second.push(b, [DOWN]).keys == [DOWN]  # UP's and FIRST's files are not here
        assert sorted(p.stem for p in (tmp_path / "second" / "results").iterdir()) == sorted(
            [UP, FIRST]
        )
        assert second.get(UP) is None
        second.pull(c, DOWN)
        assert c.result(UP) == ActionResult(UP, digests[UP], (FIRST,))
        assert c.result(FIRST).manifest_digest == digests[FIRST]


def test_without_the_upstream_on_the_remote_its_result_comes_from_the_downstream(
    tmp_path: Path, remote_url: str
) -> None:
    """Pushed without parents: DOWN's own metadata names UP and the digest its key was
    computed from, which is all a key needs."""
    from artifact_store.remote import Remote

    remote = Remote(remote_url)
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        digests = _chain(a, tmp_path)
        remote.push(a, [DOWN], parents=False)
        remote.pull(b, DOWN)
        assert b.result(UP) == ActionResult(UP, digests[UP], ())


def test_a_damaged_remote_result_is_not_recorded(tmp_path: Path, remote_url: str) -> None:
    from artifact_store.remote import Remote

    remote = Remote(remote_url)
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b, Store(tmp_path / "c") as c:
        _chain(a, tmp_path, first=True)
        remote.push(a, [DOWN])
        remote.pull(b, DOWN)
        second = Remote(f"file://{tmp_path / 'second'}")
        second.push(b, [DOWN])
        (tmp_path / "second" / "results" / f"{FIRST}.json").write_text('{"version": 1}')
        second.pull(c, DOWN)  # the pull itself succeeds
        assert c.result(UP) is not None and c.result(FIRST) is None
