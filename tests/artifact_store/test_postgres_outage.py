"""The index's PostgreSQL stopping during a compile: exit 8, and nothing lost if it comes back.

Before, a server stopped while the tool ran surfaced when the build recorded its output, as
``internal error: OperationalError … this is a bug in rmbuild`` (exit 1), and the finished
output was lost. Now a lost connection is :class:`~artifact_store.IndexUnreachable` (exit 8),
and the commit is retried for ``Store.index_retry_s`` seconds, so a restart loses nothing.

Each test runs its own throwaway cluster (the same commands as ``.ci/postgres.sh``, another
directory and port), which it stops and starts; the shared test server is never touched. The
``pg`` fixture only says that PostgreSQL is installed and usable here.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from artifact_store import Store
from artifact_store.catalog import Catalog

if TYPE_CHECKING:
    from conftest import Project

REPO = Path(__file__).resolve().parents[2]


class PrivateServer:
    """A PostgreSQL cluster of this test's own: ``stop()`` and ``start()`` it at will."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.pg_ctl = bins[-1]
        # Not under pytest's 0700 tmp dir: as root the server runs as `postgres`, which must
        # reach its data directory.
        self.dir = Path(tempfile.mkdtemp(prefix="rmbuild-pg-outage-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "RMBUILD_PG_DIR": str(self.dir), "RMBUILD_PG_PORT": str(self.port)}
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["bash", str(REPO / ".ci" / "postgres.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            pytest.skip(f"cannot start a private PostgreSQL: {done.stderr.strip()[-500:]}")
        self.url = done.stdout.strip().splitlines()[-1]

    def _ctl(self, *args: str) -> None:
        run_as = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        data = str(self.dir / "data")
        log = str(self.dir / "server.log")
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [*run_as, self.pg_ctl, "-D", data, "-l", log, "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            timeout=90,
        )

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")  # connections are cut, as in a restart or a crash

    def start(self) -> None:
        self._ctl("start")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server(pg) -> Iterator[PrivateServer]:  # noqa: ANN001
    srv = PrivateServer()
    yield srv
    srv.remove()


@pytest.fixture
def outage(project: Project, server: PrivateServer, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """The project on the private server's index; compiles hang after the marker appears."""
    monkeypatch.setenv("RMBUILD_INDEX_URL", server.url)
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    marker = project.root / "started.pid"
    # The tool holds for a while once started (FAKE_COMPILER_* reach it without entering the
    # key): the server is stopped while it runs, as a restart during a long compile.
    monkeypatch.setenv("FAKE_COMPILER_MARKER", str(marker))
    monkeypatch.setenv("FAKE_COMPILER_HANG", "2")
    return counter, marker


def _wait_for(path: Path, proc: subprocess.Popen | None = None) -> int:
    for _ in range(6000):
        if path.exists():
            return int(path.read_text())
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"rmbuild exited before the tool started: {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def _wait_gone(pid: int) -> None:
    """Until the tool (process ``pid``) has finished: its output is then all rmbuild has to
    record, and the index is down when it tries."""
    for _ in range(6000):
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.01)
    raise AssertionError(f"the tool {pid} never finished")


def test_a_server_restarted_during_the_compile_loses_nothing(
    project: Project,
    server: PrivateServer,
    outage,  # noqa: ANN001
    cli_process,  # noqa: ANN001
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter, marker = outage
    proc = cli_process("compile", str(project.spec), "--json")
    tool = _wait_for(marker, proc)
    server.stop()
    _wait_gone(tool)  # the tool finished while the index was down
    server.start()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "internal error" not in err and "Traceback" not in err
    (built,) = json.loads(out)
    with Store(project.store, server.url) as s:
        record = s.get(built["artifact"])
        assert record is not None and s.check(record) == []
    monkeypatch.delenv("FAKE_COMPILER_HANG")
    again = cli("compile", str(project.spec), "--json")
    assert again.code == 0, again.err
    assert again.json()[0]["hit"] is True
    assert len(counter.read_text().splitlines()) == 1  # the tool ran once


def test_a_server_that_stays_down_is_exit_8_not_an_internal_error(
    project: Project, server: PrivateServer, outage, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    _counter, marker = outage
    monkeypatch.setattr(Catalog, "index_retry_s", 1.0)

    # The server stops while the tool holds (FAKE_COMPILER_HANG) and before rmbuild records.
    stopper = threading.Thread(target=lambda: (_wait_for(marker), server.stop()))
    stopper.start()
    r = cli("compile", str(project.spec))
    stopper.join(60)
    r.assert_failure(8)
    assert "does not answer" in r.err and "still not answering after 1 s" in r.err
    assert f"127.0.0.1:{server.port}" in r.err  # names the server
