from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from artifact_store import Store, index


def test_head_revision_constant_matches_alembic_scripts() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(index.alembic_config())
    assert script.get_heads() == [index.HEAD_REVISION]


@pytest.mark.sqlite_only("reads the SQLite file (test_postgres.py covers PostgreSQL)")
def test_fresh_store_is_migrated_to_head(tmp_path: Path) -> None:
    with Store(tmp_path / "s"):
        pass
    engine = sa.create_engine(f"sqlite:///{tmp_path / 's' / 'index.sqlite'}")
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert {"artifacts", "aliases", "file_hashes", "alembic_version"} <= tables
        assert index.current_revision(engine) == index.HEAD_REVISION
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


@pytest.mark.sqlite_only("reads the SQLite file (test_postgres.py covers PostgreSQL)")
def test_migrations_produce_the_schema_the_code_queries(tmp_path: Path) -> None:
    # The Table objects in index.py and the migration scripts are written separately; alembic's
    # autogenerate comparison catches any drift between them.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with Store(tmp_path / "s"):
        pass
    engine = sa.create_engine(f"sqlite:///{tmp_path / 's' / 'index.sqlite'}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), index.metadata_obj)
    finally:
        engine.dispose()
    assert diff == []


@pytest.mark.sqlite_only("a store opened in a child process on its SQLite file")
def test_reopening_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store(root).close()
    # What the fast path imports, not how long it takes (timings belong in bench/).
    code = textwrap.dedent(
        f"""
        import sys
        import artifact_store
        assert "sqlalchemy" not in sys.modules, "package import must stay light"
        s = artifact_store.Store({str(root)!r})
        s.get("k")
        s.close()
        assert "alembic" not in sys.modules, "alembic imported on the fast path"
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _open(root: str, barrier: mp.synchronize.Barrier, q: mp.Queue) -> None:  # type: ignore[name-defined]
    try:
        barrier.wait(5)
        with Store(root) as s:
            s.list()
        q.put("ok")
    except BaseException as e:  # report, don't hang the parent
        q.put(repr(e))


@pytest.mark.sqlite_only("the SQLite file lock (test_postgres.py: the advisory lock)")
def test_two_processes_creating_a_fresh_store_both_succeed(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(3)
    q = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(str(tmp_path / "s"), barrier, q)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert results == ["ok"] * 3
