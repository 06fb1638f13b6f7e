"""The index under concurrency, on SQLite and on PostgreSQL.

On PostgreSQL writers are not serialized: 8 processes committing one key raised raw
IntegrityErrors (``artifact_uses_pkey``) in 2-6 of 8, and 3 of 8 first-opens of a fresh
database failed because the migration lock was a file lock local to each store root.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import sqlalchemy as sa

from artifact_store import Store, index

CTX = mp.get_context("fork")
KEYS = ["9a" * 32, "9b" * 32, "9c" * 32]  # three rounds: the race is not won by luck
N = 8


@pytest.fixture
def url(index_backend: str, request: pytest.FixtureRequest) -> str | None:
    """None (the SQLite file in the store) or a fresh PostgreSQL schema."""
    if index_backend == "sqlite":
        return None
    return request.getfixturevalue("pg").fresh_schema()


def _commit(root: str, url: str | None, n: int, barrier, q) -> None:  # noqa: ANN001
    try:
        with Store(root, url) as s:
            src = Path(root).parent / f"src{n}"
            src.mkdir()
            # Different bytes per builder (a non-reproducible compiler): one must win. Two
            # targets sharing the key (an export stage), four builders each: two use rows.
            (src / "model.bin").write_bytes(f"built by {n}".encode() * 100)
            manifest = s.put_tree(src)
            digests = []
            for key in KEYS:
                barrier.wait(30)
                rec = s.commit(
                    key, manifest, model="m", target=f"t{n % 2}", backend="onnx", metadata={}
                )
                digests.append(rec.manifest_digest)
            q.put(("ok", tuple(digests)))
    except BaseException as e:  # report, don't hang the parent
        q.put(("error", repr(e)))


def test_eight_processes_commit_one_key_one_winner_no_errors(
    tmp_path: Path, url: str | None
) -> None:
    root = tmp_path / "store"
    Store(root, url).close()  # created up front: this test is about the commit
    barrier, q = CTX.Barrier(N), CTX.Queue()
    procs = [CTX.Process(target=_commit, args=(str(root), url, n, barrier, q)) for n in range(N)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [r for r in results if r[0] != "ok"]
    assert errors == []
    for i, key in enumerate(KEYS):
        winners = {digests[i] for _, digests in results}
        assert len(winners) == 1, "every builder gets the winner's record"
        with Store(root, url) as s:
            rec = s.get(key)
            assert rec is not None and rec.manifest_digest == winners.pop()
            assert rec.uses == (("m", "t0"), ("m", "t1"))
            assert s.verify(key) == []


def _open(root: str, url: str, barrier, q) -> None:  # noqa: ANN001
    try:
        barrier.wait(30)
        with Store(root, url) as s:
            s.list()
        q.put("ok")
    except BaseException as e:
        q.put(repr(e))


def test_eight_first_opens_of_a_fresh_postgres_database(pg, tmp_path: Path) -> None:  # noqa: ANN001
    """Each process has its own store root (its own lock files): only a lock in the database
    itself serializes the migration."""
    url = pg.fresh_database()
    barrier, q = CTX.Barrier(N), CTX.Queue()
    procs = [
        CTX.Process(target=_open, args=(str(tmp_path / f"s{n}"), url, barrier, q)) for n in range(N)
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * N
    engine = sa.create_engine(url)
    try:
        assert index.current_revision(engine) == index.HEAD_REVISION
    finally:
        engine.dispose()


def test_postgres_schema_matches_the_tables_the_code_queries(pg, tmp_path: Path) -> None:  # noqa: ANN001
    url = pg.fresh_schema()
    Store(tmp_path / "s", url).close()
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        for table in index.metadata_obj.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            assert have == {c.name for c in table.columns}, table.name
    finally:
        engine.dispose()


def test_the_migration_waits_for_the_advisory_lock(pg, tmp_path: Path) -> None:  # noqa: ANN001
    """While another session holds the migration lock, a first open waits (it does not race
    the holder into CREATE TABLE); once released it migrates. Deterministic: PostgreSQL itself
    is asked when the opening session is waiting on the lock, no sleep decides it."""
    import threading
    import time
    import uuid

    schema_url = pg.fresh_schema()
    name = f"rmbuild-migrate-wait-{uuid.uuid4().hex[:8]}"
    # The opening session is told apart from every other (another suite's included) by name.
    url = (
        sa.engine.make_url(schema_url)
        .update_query_dict({"application_name": name})
        .render_as_string(hide_password=False)
    )
    holder = sa.create_engine(schema_url)
    opened = threading.Event()
    errors: list[str] = []

    def first_open() -> None:
        try:
            Store(tmp_path / "s", url).close()
            opened.set()
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    waiting_sql = sa.text(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = :name"
    )
    try:
        with holder.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({index.MIGRATE_LOCK_ID})")
            conn.commit()
            t = threading.Thread(target=first_open)
            t.start()
            deadline = time.monotonic() + 120  # a bound for a hang, not a timing assertion
            while not conn.execute(waiting_sql, {"name": name}).scalar():
                conn.commit()
                assert not opened.is_set(), "the open went ahead of the lock's holder"
                assert not errors, errors
                assert time.monotonic() < deadline, "the open never reached the lock"
                time.sleep(0.05)
            # Waiting on the lock, by PostgreSQL's own account: nothing created meanwhile.
            assert not opened.is_set()
            assert sa.inspect(conn).get_table_names() == []
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({index.MIGRATE_LOCK_ID})")
            conn.commit()
            t.join(60)
        assert errors == [] and opened.is_set()
    finally:
        holder.dispose()
