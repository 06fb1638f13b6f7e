"""Two stores sharing one index (one SQLite file, or PostgreSQL): each store's disk is its own.

An index row says which output a key names, for everyone; whether a store holds those files,
and whether they are whole there, is that store's fact (``artifact_store/local.py``). Before,
store B, finding a row whose files it lacked, marked the shared row corrupt, and A then rebuilt
a healthy artifact, and so on back and forth; and B's build re-pointed the row at its own
bytes (the stand-in compiler, like many real ones, writes different bytes on every run), so
A lacked them and rebuilt again.

Each test runs on a shared SQLite file and on a shared PostgreSQL schema (``index_backend``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from artifact_store import Store

if TYPE_CHECKING:
    from conftest import Project

K = "5a" * 32


@pytest.fixture
def shared_url(index_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One index for several stores: a SQLite file of its own, or a fresh PostgreSQL schema."""
    if index_backend == "postgres":
        return request.getfixturevalue("pg").fresh_schema()
    team = tmp_path / "team"
    team.mkdir()
    return f"sqlite:///{team / 'index.sqlite'}"


@pytest.fixture
def team(project: Project, shared_url: str, cli, tmp_path: Path, monkeypatch):  # noqa: ANN001, ANN201
    """``team(store, *args)`` runs ``rmbuild ARGS`` in store ``"a"`` or ``"b"``, one index."""
    monkeypatch.setenv("RMBUILD_INDEX_URL", shared_url)
    roots = {"a": tmp_path / "store-a", "b": tmp_path / "store-b"}

    def run(which: str, *args: str):  # noqa: ANN202
        monkeypatch.setenv("RMBUILD_STORE", str(roots[which]))
        return cli(*args)

    run.roots = roots  # type: ignore[attr-defined]
    return run


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _compile(team, which: str, spec: Path, *extra: str) -> dict:  # noqa: ANN001
    r = team(which, "compile", str(spec), "--json", *extra)
    assert r.code == 0, (which, r.err)
    assert "corrupt" not in r.err, (which, r.err)
    (result,) = r.json()
    return result


def _verify(team, which: str) -> dict:  # noqa: ANN001
    r = team(which, "verify", "--json")
    assert r.code == 0, (which, r.out, r.err)
    return r.json()


def _model_blob(root: Path, url: str, key: str) -> Path:
    with Store(root, url) as s:
        record = s.get(key)
        assert record is not None
        digest = s.get_manifest(record.manifest_digest).files["model.bin"].digest
        return s.blob_path(digest)


def _flip(blob: Path) -> None:
    """One bit flipped in place: same inode and size, the mtime moves (the cheap check's
    case; a rewrite with its mtime put back is verify's, tested elsewhere)."""
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    os.chmod(blob, 0o444)


def _row_state(url: str, root: Path, key: str) -> str:
    """The state of ``key``'s row in the index itself (what every store sharing it sees)."""
    with Store(root, url) as s:
        (row,) = [r for r in s.list() if r.key == key]
        return row.state


def test_interleaved_builds_and_checks_in_two_stores_rebuild_nothing_healthy(
    project: Project, team, shared_url: str
) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    a = _compile(team, "a", project.spec)
    key = a["artifact"]
    assert _runs(counter) == 1
    # B has the row but not the files: it builds its own copy, and marks nothing.
    b_first = team("b", "compile", str(project.spec))
    assert b_first.code == 0 and "corrupt" not in b_first.err, b_first.err
    assert "another store holds its files" in b_first.err
    assert _runs(counter) == 2
    assert _row_state(shared_url, team.roots["a"], key) == "ok"
    # Interleaved, in both orders: every one a hit, every verify whole, no tool run; a run
    # in each store passes the integrity check (the stand-in's model.bin is then refused by
    # ONNX Runtime itself, exit 6 "cannot load", which is not this test's business).
    for which in ("a", "b", "b", "a", "a", "b"):
        assert _compile(team, which, project.spec)["hit"] is True
        assert _verify(team, which) == {"checked": 1, "corrupt": {}}
        ran = team(which, "run", "--artifact", key[:12], "-n", "1")
        assert "corrupt" not in ran.err and "not in this store" not in ran.err, ran.err
    assert _runs(counter) == 2
    assert _row_state(shared_url, team.roots["a"], key) == "ok"
    assert not (team.roots["a"] / "quarantine").exists()
    assert not (team.roots["b"] / "quarantine").exists()

    # A real bit flip in A's copy: caught in A (quarantined, rebuilt there), not in B.
    _flip(_model_blob(team.roots["a"], shared_url, key))
    again = team("a", "compile", str(project.spec))
    assert again.code == 0 and "corrupt" in again.err and "model.bin" in again.err, again.err
    assert _runs(counter) == 3
    assert len(list((team.roots["a"] / "quarantine").iterdir())) == 1
    assert not (team.roots["b"] / "quarantine").exists()
    assert _verify(team, "b") == {"checked": 1, "corrupt": {}}
    assert _compile(team, "b", project.spec)["hit"] is True
    assert _compile(team, "a", project.spec)["hit"] is True
    assert _verify(team, "a") == {"checked": 1, "corrupt": {}}
    assert _runs(counter) == 3
    assert _row_state(shared_url, team.roots["a"], key) == "ok"


def test_with_a_remote_the_second_store_pulls_and_a_flip_is_repaired_from_it(
    project: Project, team, shared_url: str, tmp_path: Path
) -> None:  # noqa: ANN001
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    remote = f"file://{tmp_path / 'remote'}"
    a = _compile(team, "a", project.spec, "--remote", remote)
    b = _compile(team, "b", project.spec, "--remote", remote)
    assert _runs(counter) == 1  # B pulled A's bytes instead of building
    assert b["artifact"] == a["artifact"]
    for which in ("b", "a", "a", "b"):
        assert _compile(team, which, project.spec, "--remote", remote)["hit"] is True
        assert _verify(team, which) == {"checked": 1, "corrupt": {}}
    # A flip in B: caught in B, which pulls a whole copy again; A is untouched.
    _flip(_model_blob(team.roots["b"], shared_url, a["artifact"]))
    healed = team("b", "compile", str(project.spec), "--remote", remote)
    assert healed.code == 0 and "corrupt" in healed.err and "pulled" in healed.err, healed.err
    assert _runs(counter) == 1
    assert _verify(team, "b") == {"checked": 1, "corrupt": {}}
    assert _verify(team, "a") == {"checked": 1, "corrupt": {}}
    assert _compile(team, "a", project.spec)["hit"] is True
    assert not (team.roots["a"] / "quarantine").exists()
    assert _row_state(shared_url, team.roots["a"], a["artifact"]) == "ok"


def test_a_store_without_the_files_is_told_where_they_are_not_that_they_are_corrupt(
    project: Project, team
) -> None:  # noqa: ANN001
    a = _compile(team, "a", project.spec)
    ran = team("b", "run", "--artifact", a["artifact"][:12], "-n", "1")
    ran.assert_failure(5)
    assert "not in this store" in ran.err and "corrupt" not in ran.err
    listed = team("b", "verify", "--json")
    assert listed.code == 0, listed.err
    assert listed.json() == {"checked": 0, "corrupt": {}, "not_in_this_store": [a["artifact"]]}
    plan = team("b", "compile", str(project.spec), "--plan", "--json")
    assert plan.code == 0, plan.err
    (stage,) = plan.json()["targets"][0]["stages"]
    assert (stage["local"], stage["action"]) == ("miss", "build")
    assert _verify(team, "a") == {"checked": 1, "corrupt": {}}  # nothing was marked


# ---- the library, two Store objects on one index ------------------------------------------------


def _put(store: Store, tmp_path: Path, name: str, data: bytes):  # noqa: ANN202
    src = tmp_path / name
    src.mkdir()
    (src / "model.bin").write_bytes(data)
    return store.put_tree(src)


def test_each_store_serves_its_own_copy_and_gc_keeps_it(tmp_path: Path, shared_url: str) -> None:
    with Store(tmp_path / "a", shared_url) as a, Store(tmp_path / "b", shared_url) as b:
        ma = _put(a, tmp_path, "src-a", b"built in a")
        a.commit(K, ma, model="m", target="t", backend="onnx", metadata={})
        (absent,) = b.check(K)
        assert absent.absent and "not in this store" in str(absent)
        assert b.get(K).state == "ok" and a.check(K) == []  # type: ignore[union-attr]
        mb = _put(b, tmp_path, "src-b", b"built in b")  # a tool whose bytes differ per run
        rec_b = b.commit(K, mb, model="m", target="t2", backend="onnx", metadata={})
        assert rec_b.manifest_digest == mb.digest and ("m", "t2") in rec_b.uses
        assert a.get(K).manifest_digest == ma.digest  # type: ignore[union-attr]
        assert a.check(K) == [] and b.check(K) == []
        for s in (a, b):
            s.gc(grace=0)
        assert a.verify(K) == [] and b.verify(K) == []
        # A forced rebuild in A re-points the row; B keeps serving its own copy.
        ma2 = _put(a, tmp_path, "src-a2", b"rebuilt in a")
        a.commit(K, ma2, model="m", target="t", backend="onnx", metadata={}, replace=True)
        assert b.get(K).manifest_digest == mb.digest and b.check(K) == []  # type: ignore[union-attr]
    with Store(tmp_path / "c", shared_url) as c:  # a third store: the row's output, absent
        assert c.get(K).manifest_digest == ma2.digest and c.check(K)[0].absent  # type: ignore[union-attr]


def test_damage_is_marked_in_the_damaged_store_only(tmp_path: Path, shared_url: str) -> None:
    with Store(tmp_path / "a", shared_url) as a, Store(tmp_path / "b", shared_url) as b:
        m = _put(a, tmp_path, "src", b"same bytes")
        a.commit(K, m, model="m", target="t", backend="onnx", metadata={})
        b.put_tree(tmp_path / "src")  # the same output, built or copied there
        b.commit(K, m, model="m", target="t", backend="onnx", metadata={})
        blob = a.blob_path(m.files["model.bin"].digest)
        _flip(blob)
        assert [p.path for p in a.check(K)] == ["model.bin"]
        assert a.get(K).corrupt and not blob.exists()  # type: ignore[union-attr]
        assert b.check(K) == [] and not b.get(K).corrupt  # type: ignore[union-attr]
        assert [r.state for r in b.list()] == ["ok"]  # the index row is nobody's to mark


def test_a_mark_an_older_version_left_on_the_row_is_rechecked_not_obeyed(
    tmp_path: Path, shared_url: str
) -> None:
    """Older versions wrote ``state='corrupt'`` on the shared row. A store whose copy re-hashes
    whole serves it (and clears the row); one whose copy is damaged marks its own."""
    from artifact_store import index

    with Store(tmp_path / "a", shared_url) as a:
        m = _put(a, tmp_path, "src", b"whole")
        a.commit(K, m, model="m", target="t", backend="onnx", metadata={})
        with a._write() as conn:
            t = index.artifacts
            conn.execute(t.update().where(t.c.key == K).values(state="corrupt", problem="B"))
        a._local.try_write(lambda c: c.execute("DELETE FROM copies"))  # as an old store had
        assert a.check(K) == []
        assert [r.state for r in a.list()] == ["ok"]
