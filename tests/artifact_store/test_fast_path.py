"""The stdlib-sqlite3 read path a store at head uses for get() and stat-cache lookups.

It must return exactly what the SQLAlchemy path returns, and must not import SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from artifact_store import Store, hashing, statcache

KEY = "ab12cd34" + "0" * 56
META = {"blobs": [], "nested": {"b": [1, 2.5, None, True]}, "text": "ünï ✓", "n": 10**15}

# The sqlite3 fast path is SQLite itself (the rest runs on PostgreSQL too).
pytestmark = pytest.mark.sqlite_only("the sqlite3 fast path")


def _sa_store(root: Path) -> Store:
    """The same index opened through SQLAlchemy: a driver-qualified URL skips the fast path."""
    s = Store(root, index_url=f"sqlite+pysqlite:///{root / 'index.sqlite'}")
    assert s._reader is None
    return s


def _fast_store(root: Path) -> Store:
    s = Store(root)
    assert s._reader is not None, "an existing index at head should use the sqlite3 reader"
    return s


def _aged_files(tmp_path: Path, age, n: int) -> list[Path]:
    files = []
    for i in range(n):
        f = tmp_path / "inputs" / f"f{i}"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(f"input {i}".encode())
        age(f)
        files.append(f)
    return files


@pytest.fixture
def populated(tmp_path: Path, build) -> Path:
    """A closed store holding KEY (two aliases, rich metadata), "plain" and "fixed-time"."""
    root = tmp_path / "s"
    with Store(root) as s:
        assert s._reader is None  # a fresh store is created and migrated by SQLAlchemy
        build(s, tmp_path, KEY, {"model.onnx": b"graph"}, metadata=META)
        s.tag("zeta", KEY)  # tagged out of order: both paths must sort aliases
        s.tag("alpha", KEY)
        # Uses added out of order too (the first, ("m", "cpu"), came with the commit).
        assert s.add_use(KEY, "m", "gpu") and s.add_use(KEY, "a-model", "cpu")
        build(s, tmp_path, "plain", {"x": b"x"})
        # A timestamp with zero microseconds: check both paths decode the stored text alike.
        import sqlalchemy as sa

        from artifact_store import index

        record = s.get("plain")
        assert record is not None
        with s._write() as conn:
            conn.execute(
                sa.insert(index.artifacts).values(
                    key="fixed-time",
                    manifest_digest=record.manifest_digest,
                    model="m",
                    target="t",
                    backend="b",
                    created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                    last_used_at=datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                    size=1,
                    metadata={},
                )
            )
    return root


def test_fast_get_equals_sqlalchemy_get(populated: Path) -> None:
    with _fast_store(populated) as fast, _sa_store(populated) as slow:
        for key in (KEY, "plain", "fixed-time", "missing"):
            a, b = fast.get(key), slow.get(key)
            assert a == b
            if b is None:
                continue
            for field in b.__dataclass_fields__:
                assert getattr(a, field) == getattr(b, field), field
                assert type(getattr(a, field)) is type(getattr(b, field)), field
            for when in (a.created_at, a.last_used_at):
                assert when.tzinfo is UTC and when.utcoffset() == timedelta(0)
        rec = fast.get(KEY)
        assert rec is not None
        assert rec.aliases == ("alpha", "zeta") and rec.metadata == META
        assert rec.uses == (("a-model", "cpu"), ("m", "cpu"), ("m", "gpu"))
        fixed = fast.get("fixed-time")  # inserted without commit: no uses, no aliases
        assert fixed is not None and fixed.uses == () and fixed.aliases == ()
        assert slow.list(target="gpu") == [rec]  # list builds the same records as get
        # A write goes through SQLAlchemy (created on demand); the reader sees it at once.
        before = rec.last_used_at
        time.sleep(0.01)
        fast.touch(KEY)
        after = fast.get(KEY)
        assert after is not None and after.last_used_at > before
        assert after == slow.get(KEY)


def test_fast_stat_cache_lookup(tmp_path: Path, age, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "s"
    files = _aged_files(tmp_path, age, 30)
    with Store(root) as s:
        expected = s.hash_files(files)
        model = s.put_file(files[0])
    with _fast_store(root) as fast:
        statements: list[str] = []
        assert fast._reader is not None
        fast._reader.set_trace_callback(statements.append)
        monkeypatch.setattr(hashing, "hash_path", lambda p: pytest.fail(f"{p} was re-read"))
        assert fast.hash_files(files) == expected
        assert sum("file_hashes" in q for q in statements) == 1, "one batched lookup"
        assert fast._sa_engine is None, "a full cache hit must not create the engine"
        # _copy_in's lookup takes the same path: a cached input is neither read nor copied.
        from artifact_store import blobs

        monkeypatch.setattr(blobs, "hash_fileobj", lambda *a: pytest.fail("file was read"))
        assert fast.put_file(files[0]) == model
        monkeypatch.undo()

        # A changed file is rehashed, and its new digest stored through SQLAlchemy ...
        files[1].write_bytes(b"changed")
        age(files[1], 60)
        changed = fast.hash_file(files[1])
        assert changed == hashing.hash_bytes(b"changed")
        assert fast._sa_engine is not None
        # ... where the sqlite3 reader finds it.
        assert statcache.lookup(
            fast._reader, [statcache.StatKey.of(str(files[1]), files[1].stat())]
        )
        # A hash-version bump invalidates fast-path entries too.
        monkeypatch.setattr(statcache, "HASH_VERSION", hashing.HASH_VERSION + 1)
        assert (
            statcache.lookup(fast._reader, [statcache.StatKey.of(str(files[1]), files[1].stat())])
            == {}
        )


def test_reader_is_not_blocked_by_a_writer(populated: Path, tmp_path: Path, age) -> None:
    files = _aged_files(tmp_path, age, 3)
    with Store(populated) as s:
        s.hash_files(files)
    with _fast_store(populated) as fast:
        old = fast.get(KEY)
        assert old is not None
        writer = sqlite3.connect(populated / "index.sqlite", isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("UPDATE artifacts SET model = 'new' WHERE key = ?", (KEY,))
            writer.execute("DELETE FROM file_hashes")
            t = time.monotonic()
            assert fast.get(KEY) == old  # the last committed state, without waiting
            assert (
                len(
                    statcache.lookup(
                        fast._reader, [statcache.StatKey.of(str(f), f.stat()) for f in files]
                    )
                )
                == 3
            )
            assert time.monotonic() - t < 5
            writer.execute("COMMIT")
        finally:
            writer.close()
        new = fast.get(KEY)
        assert new is not None and new.model == "new"


def test_fast_path_only_for_a_plain_sqlite_file_at_head(tmp_path: Path) -> None:
    root = tmp_path / "s"
    # An existing but empty database file is migrated by SQLAlchemy, as before.
    root.mkdir()
    sqlite3.connect(root / "index.sqlite").close()
    with Store(root) as s:
        assert s._reader is None and s.list() == []
    with Store(root) as s:
        assert s._reader is not None
    # An older (or unknown) stamped revision goes through SQLAlchemy / alembic too.
    from artifact_store import reader as store_mod

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_mod, "HEAD_REVISION", "9999_future")
        with Store(root) as s:
            assert s._reader is None
    with Store(root, index_url=f"sqlite:///{root / 'index.sqlite'}?timeout=5") as s:
        assert s._reader is None
    s = Store(root)
    s.close()
    with pytest.raises(sqlite3.ProgrammingError):  # close() closes the reader
        s._reader.execute("SELECT 1")  # type: ignore[union-attr]


def test_cache_hit_does_not_import_sqlalchemy(populated: Path, tmp_path: Path, age) -> None:
    files = _aged_files(tmp_path, age, 5)
    with Store(populated) as s:
        s.hash_files(files)
    code = textwrap.dedent(
        f"""
        import sys
        import artifact_store
        s = artifact_store.Store({str(populated)!r})
        assert s.get({KEY!r}).aliases == ("alpha", "zeta")
        assert s.get("missing") is None
        s.hash_files({[str(f) for f in files]!r})
        assert "sqlalchemy" not in sys.modules, sorted(m for m in sys.modules if "sqlalchemy" in m)
        s.touch({KEY!r})  # a write loads SQLAlchemy on demand
        assert "sqlalchemy" in sys.modules
        assert s.get({KEY!r}).last_used_at > s.get({KEY!r}).created_at
        s.close()
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_has_use_does_not_import_sqlalchemy(populated: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import artifact_store
        s = artifact_store.Store({str(populated)!r})
        assert s.has_use({KEY!r}, "m", "gpu")
        assert not s.has_use({KEY!r}, "m", "npu")
        assert not s.has_use("missing", "m", "cpu")
        assert "sqlalchemy" not in sys.modules, "has_use must take the sqlite3 path"
        assert s.add_use({KEY!r}, "m", "npu")  # the write loads SQLAlchemy on demand
        assert "sqlalchemy" in sys.modules
        assert s.has_use({KEY!r}, "m", "npu") and ("m", "npu") in s.get({KEY!r}).uses
        s.close()
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    with _sa_store(populated) as slow:  # and the SQLAlchemy path answers alike
        assert slow.has_use(KEY, "m", "npu") and not slow.has_use(KEY, "x", "npu")
        assert not slow.has_use("missing", "m", "cpu")
