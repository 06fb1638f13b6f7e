"""The stat cache as seen through Store.hash_file / hash_files / put_file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from artifact_store import Store, hashing, statcache


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every path actually read by the hasher."""
    calls: list[str] = []
    real = hashing.hash_path

    def spy(path: str | os.PathLike[str]) -> str:
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(hashing, "hash_path", spy)
    return calls


def test_unchanged_file_is_not_reread(
    store: Store, tmp_path: Path, counted: list[str], age
) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"w" * 10_000)
    age(f)
    d = store.hash_file(f)
    assert d == hashlib.sha256(b"w" * 10_000).hexdigest()
    assert counted == [str(f)]
    assert store.hash_file(f) == d
    assert counted == [str(f)], "unchanged file was hashed again"


def test_changed_file_is_rehashed(store: Store, tmp_path: Path, counted: list[str], age) -> None:
    f = tmp_path / "w"
    f.write_bytes(b"one")
    age(f, 7200)
    store.hash_file(f)
    f.write_bytes(b"two")  # same size; only content and mtime differ
    age(f, 3600)
    assert store.hash_file(f) == hashlib.sha256(b"two").hexdigest()
    assert len(counted) == 2


def test_replaced_file_with_same_stat_but_new_inode_is_rehashed(
    store: Store, tmp_path: Path, counted: list[str], age
) -> None:
    f = tmp_path / "w"
    f.write_bytes(b"one")
    age(f)
    store.hash_file(f)
    mtime = f.stat().st_mtime_ns
    tmp = tmp_path / "w.new"
    tmp.write_bytes(b"two")
    os.utime(tmp, ns=(mtime, mtime))
    os.replace(tmp, f)
    assert store.hash_file(f) == hashlib.sha256(b"two").hexdigest()


def test_young_files_are_hashed_but_not_cached(
    store: Store, tmp_path: Path, counted: list[str]
) -> None:
    f = tmp_path / "fresh"
    f.write_bytes(b"x")
    store.hash_file(f)
    store.hash_file(f)
    assert len(counted) == 2


def test_hash_files_uses_one_lookup_query(
    store: Store, tmp_path: Path, counted: list[str], age, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = []
    for i in range(30):
        f = tmp_path / f"f{i}"
        f.write_bytes(str(i).encode())
        age(f)
        files.append(f)
    first = store.hash_files(files)
    assert len(counted) == 30
    lookups: list[int] = []
    real = statcache.lookup
    monkeypatch.setattr(
        statcache, "lookup", lambda e, keys: lookups.append(len(keys)) or real(e, keys)
    )

    import sqlalchemy as sa

    statements: list[str] = []
    sa.event.listen(store._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    second = store.hash_files(files)
    assert second == first and set(second) == set(files)
    assert len(counted) == 30 and lookups == [30]
    assert sum("file_hashes" in s for s in statements) == 1


def test_hash_version_bump_invalidates(
    store: Store, tmp_path: Path, counted: list[str], age, monkeypatch
) -> None:
    f = tmp_path / "w"
    f.write_bytes(b"x")
    age(f)
    store.hash_file(f)
    monkeypatch.setattr(statcache, "HASH_VERSION", hashing.HASH_VERSION + 1)
    store.hash_file(f)
    assert len(counted) == 2


def test_put_file_of_cached_input_skips_the_copy(
    store: Store, tmp_path: Path, age, monkeypatch
) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"m" * 1000)
    age(f)
    d = store.put_file(f)
    from artifact_store import blobs

    monkeypatch.setattr(blobs, "hash_fileobj", lambda *a: pytest.fail("file was read again"))
    assert store.put_file(f) == d


def test_hash_file_rejects_directories(store: Store, tmp_path: Path) -> None:
    from artifact_store import StoreError

    with pytest.raises(StoreError):
        store.hash_file(tmp_path)


# ---- concurrent writers on PostgreSQL -----------------------------------------------------------

_WRITER = """
import sys, time
from pathlib import Path
from artifact_store import Store
root, url, gate, *files = sys.argv[1:]
with Store(root, url) as s:
    while not Path(gate).exists():  # every writer starts at once
        time.sleep(0.01)
    s.hash_files(files)
print("ok")
"""


def _server_log() -> Path:
    base = os.environ.get("RMBUILD_PG_DIR") or os.path.join(
        os.environ.get("TMPDIR") or "/tmp", "rmbuild-pg"
    )
    return Path(base) / "server.log"


def test_concurrent_writers_on_postgres_upsert_without_errors(pg, tmp_path: Path, age) -> None:  # noqa: ANN001
    """Eight processes caching the same paths at once: the cache is one upsert per batch.

    The former delete-then-insert lost the race on the primary key: the server logged
    ``duplicate key value violates unique constraint "file_hashes_pkey"`` and psycopg printed
    ``error ignored terminating <psycopg.Pipeline …>: pipeline aborted`` on stderr.
    """
    import subprocess
    import sys

    url = pg.fresh_schema()
    Store(tmp_path / "s0", url).close()  # the schema exists before the race
    files = []
    for i in range(40):
        f = tmp_path / "inputs" / f"f{i}"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(os.urandom(64))
        age(f)
        files.append(str(f))
    log = _server_log()
    start = log.stat().st_size if log.is_file() and os.access(log, os.R_OK) else None
    gate = tmp_path / "go"
    procs = [
        subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-c", _WRITER, str(tmp_path / f"s{n}"), url, str(gate), *files],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    gate.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, results
    assert [err for _, err in results] == [""] * 8  # no "pipeline aborted", nothing at all
    with Store(tmp_path / "s0", url) as s:
        cached = statcache.lookup(s._engine, [statcache.StatKey.of(f, os.stat(f)) for f in files])
    assert len(cached) == 40
    if start is None:
        pytest.skip(f"the server's log {log} is not readable here; stderr was checked")
    with open(log, encoding="utf-8", errors="replace") as fh:
        fh.seek(start)
        ours = [line for line in fh if str(tmp_path) in line and "already exists" in line]
    assert ours == []
