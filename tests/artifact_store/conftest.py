"""The store's tests, each run on a SQLite index and on a PostgreSQL one.

Every test gets the ``index_backend`` parameter: ``sqlite`` (the default index file inside the
store) or ``postgres``, where every ``Store(root)`` the test opens without an index URL gets a
fresh schema of the server named by ``RMBUILD_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts
one), one schema per store root. Without that server the ``postgres`` runs skip, saying why.
Tests of SQLite itself (the sqlite3 fast path, SQLite's errors) are marked ``sqlite_only``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artifact_store import Manifest, Store

PG_ENV = "RMBUILD_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(why): the test is about SQLite itself; no PostgreSQL run"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "index_backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        params = ["sqlite"] if only else ["sqlite", "postgres"]
        if "pg" in metafunc.fixturenames:
            params = ["postgres"]  # a test of PostgreSQL itself
        metafunc.parametrize("index_backend", params, indirect=True)


_pg_problem: list[str] = []


class PgServer:
    """The test server: fresh schemas (and databases) on demand, dropped afterwards."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = sa.engine.make_url(url)
        self.engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    def _exec(self, sql: str, engine: Any = None) -> None:
        with (engine or self.engine).connect() as conn:
            conn.exec_driver_sql(sql)

    def fresh_schema(self) -> str:
        """A URL whose tables land in a new, empty schema."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._exec(f"CREATE SCHEMA {name}")
        self.schemas.append(name)
        return self.url.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(
            hide_password=False
        )

    def fresh_database(self) -> str:
        """A URL of a new, empty database (for first-open races on a whole database)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._exec(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.schemas:
            self._exec(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        for name in self.databases:
            self._exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.schemas, self.databases = [], []

    schemas: list[str] = []
    databases: list[str] = []


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer | None]:
    """The PostgreSQL of ``$RMBUILD_TEST_POSTGRES_URL``, or None (and why, for the skip)."""
    url = os.environ.get(PG_ENV)
    if not url:
        _pg_problem.append(f"${PG_ENV} is not set (source .ci/postgres.sh to start a server)")
        yield None
        return
    try:
        server = PgServer(url)
        server.schemas, server.databases = [], []
        server._exec("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: skip, say why
        _pg_problem.append(f"cannot reach ${PG_ENV}: {str(exc).splitlines()[0]}")
        yield None
        return
    yield server
    server.engine.dispose()


@pytest.fixture
def pg(pg_server: PgServer | None) -> Iterator[PgServer]:
    """The test server; the test skips (with the reason) where there is none."""
    if pg_server is None:
        pytest.skip(f"no PostgreSQL: {_pg_problem[-1]}")
    yield pg_server
    pg_server.drop_all()


@pytest.fixture(autouse=True)
def index_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``sqlite`` or ``postgres``: on ``postgres`` each store root gets a fresh schema."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        server: PgServer = request.getfixturevalue("pg")
        urls: dict[Path, str] = {}
        init = Store.__init__

        def pg_init(self: Store, root: Any, index_url: str | None = None, **kw: Any) -> None:
            if index_url is None:
                key = Path(root).expanduser().absolute()
                if key not in urls:
                    urls[key] = server.fresh_schema()
                index_url = urls[key]
            init(self, root, index_url, **kw)

        monkeypatch.setattr(Store, "__init__", pg_init)
    return backend


@pytest.fixture(autouse=True)
def _fresh_memory_remote() -> Iterator[None]:
    """fsspec's memory:// filesystem is one per process: what a test pushed there must not be
    found by the next (the same test on the other backend pushes the same keys)."""
    yield
    import sys

    if "fsspec" in sys.modules:
        from fsspec.implementations.memory import MemoryFileSystem

        MemoryFileSystem.store.clear()
        MemoryFileSystem.pseudo_dirs[:] = [""]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store")
    yield s
    s.close()


def _make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relpath -> content) under ``root`` and return ``root``."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _age(path: Path, seconds: float = 3600.0) -> None:
    """Backdate ``path``'s mtime (the stat cache ignores files younger than a few seconds)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def _build(
    store: Store, tmp_path: Path, key: str, files: dict[str, bytes], **kw: object
) -> Manifest:
    """Put a tree and commit it under ``key``; returns the manifest."""
    src = _make_tree(tmp_path / f"src-{key}", files)
    manifest = store.put_tree(src)
    store.commit(
        key,
        manifest,
        model=str(kw.get("model", "m")),
        target=str(kw.get("target", "cpu")),
        backend=str(kw.get("backend", "onnx")),
        metadata=dict(kw.get("metadata", {})),  # type: ignore[call-overload]
    )
    return manifest


# Helpers are handed out as fixtures: tests/ has no __init__.py, so test modules cannot
# import from conftest.


@pytest.fixture
def make_tree():  # noqa: ANN201
    return _make_tree


@pytest.fixture
def build():  # noqa: ANN201
    return _build


@pytest.fixture
def age():  # noqa: ANN201
    return _age
