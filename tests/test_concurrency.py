"""Builders never collide, and a killed builder leaves nothing behind (separate processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Project

TIMEOUT = 60


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"rmbuild exited {proc.returncode} early:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    (result,) = json.loads(out)
    return {**result, "stderr": err}


def _alive(pid: int, grace: float = 5) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_two_compiles_started_together_run_the_compiler_once(
    project: Project,  # noqa: ANN001
    cli_process,
) -> None:
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter), sleep=1.5)
    procs = [cli_process("compile", str(project.spec), "--json") for _ in range(2)]
    results = [_finish(p) for p in procs]
    assert len(counter.read_text().splitlines()) == 1
    assert results[0]["artifact"] == results[1]["artifact"]
    assert sorted(r["hit"] for r in results) == [False, True]


def test_second_builder_waits_for_the_first_then_hits(
    project: Project,
    cli_process,  # noqa: ANN001
    cli,
) -> None:
    counter = project.root / "runs.txt"
    marker = project.root / "compiler.pid"
    project.set_flags(counter=str(counter), marker=str(marker), sleep=1.5)
    first = cli_process("compile", str(project.spec), "--json")
    _wait_for(marker, first)  # the first one holds the key's lock and its compiler runs
    second = cli_process("compile", str(project.spec), "--json")
    a, b = _finish(first), _finish(second)
    assert a["hit"] is False and b["hit"] is True
    assert a["artifact"] == b["artifact"]
    assert "another process is building this key; waiting" in b["stderr"]
    assert len(counter.read_text().splitlines()) == 1
    assert [x["id"] for x in cli("ls", "--json").json()] == [a["artifact"]]


def test_sigkill_mid_compile_leaves_no_artifact_and_no_stuck_lock(
    project: Project,  # noqa: ANN001
    cli_process,
    cli,
) -> None:
    from rmbuild.storage.store import open_store

    counter = project.root / "runs.txt"
    marker = project.root / "compiler.pid"
    project.set_flags(counter=str(counter), marker=str(marker))
    # The hang comes from the environment, so the rebuild below has the very same key.
    victim = cli_process("compile", str(project.spec), "--json", env={"FAKE_COMPILER_HANG": "120"})
    _wait_for(marker, victim)
    compiler_pid = int(marker.read_text())
    assert _alive(compiler_pid, grace=0.2)
    t0 = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=TIMEOUT)
    assert victim.returncode == -signal.SIGKILL
    # The compiler dies with its parent (PR_SET_PDEATHSIG) instead of running on as an orphan.
    assert not _alive(compiler_pid), "the compiler outlived the killed rmbuild"
    assert time.monotonic() - t0 < 10

    # No artifact row; nothing half-built visible.
    assert cli("ls", "--json").json() == []
    assert not (project.store / "trees").exists() or not list((project.store / "trees").iterdir())
    # The key's lock went with the dead holder: it can be taken at once.
    locks = list((project.store / "locks").glob("*.lock"))
    assert locks
    with open_store() as store:
        for lock in locks:
            with store.lock(lock.stem, timeout=0):
                pass

    marker.unlink()
    t1 = time.monotonic()
    r = cli("compile", str(project.spec), "--json")
    assert r.code == 0, r.err
    assert time.monotonic() - t1 < 20
    (result,) = r.json()
    assert result["hit"] is False
    assert len(counter.read_text().splitlines()) == 2  # the killed run and this one
    listing = cli("ls", "--json").json()
    assert [x["id"] for x in listing] == [result["artifact"]]
    shown = cli("show", result["artifact"], "--json").json()
    assert "model.bin" in shown["files"]
