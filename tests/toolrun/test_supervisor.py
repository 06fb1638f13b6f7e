"""No process outlives a build: the supervisor and how rmbuild uses it.

The stand-in tool (tests/fakes/forking_tool.py) starts a plain child and a daemon that left its
session, both ignoring SIGTERM/SIGINT/SIGHUP, like a compiler wrapper over a native binary.
Every test kills rmbuild (or lets the tool time out or exit) and then polls until each of them
is gone; the bounds are generous and only there so a failure does not hang the suite.
"""

from __future__ import annotations

import ast
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rmbuild.toolrun import toolproc

if TYPE_CHECKING:
    from conftest import Project

FAKES = Path(__file__).resolve().parents[1] / "fakes"
GONE_WITHIN_S = 20.0
LIBRARY_BUILD = (
    "import sys\n"
    "from rmbuild.build import compile_spec\n"
    "from rmbuild.storage.store import open_store\n"
    "with open_store() as store:\n"
    "    compile_spec(sys.argv[1], store=store)\n"
)


def _forking_tool(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = (FAKES / "forking_tool.py").read_text(encoding="utf-8").split("\n", 1)[1]
    path = folder / "forking-tool"
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped running


def _assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + GONE_WITHIN_S
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            survivors = [pid for pid in pids if _alive(pid)]
            for pid in survivors:  # do not leak them into the rest of the suite
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"processes outlived the build: {survivors}")
        time.sleep(0.05)


def _wait_for_pids(marker: Path, proc: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} early:\n{out}\n{err}")
        assert time.monotonic() < deadline, "the tool never started its grandchildren"
        time.sleep(0.05)
    pids = [int(p) for p in marker.read_text().split()]
    assert all(_alive(pid) for pid in pids)
    return pids


@pytest.fixture
def forking(project: Project, tmp_path: Path) -> Path:
    """The project's profile runs the forking stand-in; returns its pid marker file."""
    project.write_profile("fake-compile", project.fake_profile(tool=str(_forking_tool(tmp_path))))
    marker = tmp_path / "pids.txt"
    project.set_flags(marker=str(marker), mode="hang")
    return marker


def _start_library_build(project: Project) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-c", LIBRARY_BUILD, str(project.spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ----------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("how", ["cli", "library"])
def test_kill_9_of_rmbuild_kills_the_tools_grandchildren(
    project: Project, forking: Path, cli_process, how: str
) -> None:
    if how == "cli":
        victim = cli_process("compile", str(project.spec), "--json")
    else:
        victim = _start_library_build(project)
    pids = _wait_for_pids(forking, victim)
    victim.kill()
    victim.communicate(timeout=60)
    # The supervisor got its parent-death signal and killed the whole tree, the daemon that
    # left the session included (it was reparented to the supervisor, a subreaper).
    _assert_gone(pids)


# ----------------------------------------------------------------------------- SIGTERM / SIGINT


def test_sigterm_exits_143_and_cleans_up(project: Project, forking: Path, cli_process, cli) -> None:
    from rmbuild.storage.store import open_store

    victim = cli_process("compile", str(project.spec), "--json")
    pids = _wait_for_pids(forking, victim)
    victim.send_signal(signal.SIGTERM)
    out, err = victim.communicate(timeout=60)
    assert victim.returncode == 143, err
    assert "terminated" in err
    assert "Traceback" not in err and "Exception in thread" not in err
    _assert_gone(pids)
    project.assert_empty(cli)  # no artifact row, no build dir left in tmp/ or trees/
    with open_store() as store:  # the key's lock is free
        for lock in (project.store / "locks").glob("*.lock"):
            with store.lock(lock.stem, timeout=0):
                pass


@pytest.mark.parametrize("attempt", range(3))
def test_ctrl_c_exits_130_without_a_thread_traceback(
    project: Project, forking: Path, cli_process, cli, attempt: int
) -> None:
    # A tool busy writing its log when Ctrl-C lands: the log used to be closed under the
    # reader thread ("ValueError: flush of closed file").
    project.set_flags(marker=str(forking), mode="spew")
    victim = cli_process("compile", str(project.spec), "--json")
    pids = _wait_for_pids(forking, victim)
    time.sleep(0.05 * attempt)  # land at different points of the stream
    victim.send_signal(signal.SIGINT)
    out, err = victim.communicate(timeout=60)
    assert victim.returncode == 130, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert "closed file" not in err
    _assert_gone(pids)
    project.assert_empty(cli)


# ----------------------------------------------------------------------------- timeout, exit


def test_timeout_kills_the_grandchildren(project: Project, forking: Path, cli) -> None:
    project.write_profile(
        "fake-compile",
        project.fake_profile(tool=str(_forking_tool(forking.parent)), timeout=2),
    )
    r = cli("compile", str(project.spec))
    r.assert_failure(4)
    assert "did not finish within 2 s" in r.err
    _assert_gone([int(p) for p in forking.read_text().split()])
    project.assert_empty(cli)


def test_a_tool_that_exits_leaves_nothing_running(project: Project, forking: Path, cli) -> None:
    project.set_flags(marker=str(forking), mode="ok")
    r = cli("compile", str(project.spec), "--json")
    assert r.code == 0, r.err
    _assert_gone([int(p) for p in forking.read_text().split()])


# ----------------------------------------------------------------------------- the supervisor


def test_supervisor_stops_the_tree_on_sigterm_and_reports_it(tmp_path: Path) -> None:
    tool = _forking_tool(tmp_path)
    marker = tmp_path / "pids.txt"
    status_r, status_w = os.pipe()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        toolproc.supervised([str(tool), "--marker", str(marker)], status_fd=status_w),
        pass_fds=(status_w,),
        stdout=subprocess.DEVNULL,
    )
    os.close(status_w)
    pids = _wait_for_pids(marker, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    _assert_gone(pids)
    events = toolproc._read_events(status_r)
    assert events["started"]["pid"] == pids[0]
    assert events["end"]["reason"] == "signal"
    assert events["end"]["stop_signal"] == signal.SIGTERM
    assert events["end"]["clean"] is True


def test_supervisor_relays_the_exit_code(tmp_path: Path) -> None:
    argv = toolproc.supervised([sys.executable, "-c", "import sys; sys.exit(7)"])
    assert subprocess.run(argv, check=False).returncode == 7  # noqa: S603


def test_supervisor_imports_nothing_of_rmbuild() -> None:
    # It must start in milliseconds and run whatever state rmbuild is in: stdlib only.
    tree = ast.parse(toolproc.SUPERVISOR.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= {"__future__", "ctypes", "json", "os", "signal", "sys", "time"}, names


def test_sigterm_during_parallel_builds_stops_every_worker(
    project: Project, forking: Path, cli_process, cli
) -> None:
    # `compile -j 2`: the tools run in worker processes; SIGTERM reaches rmbuild only.
    text = project.spec.read_text()
    second = forking.with_name("pids2.txt")
    text += (
        "  fake2:\n    profile: fake-compile\n    flags:\n"
        f'      marker: "{second}"\n      mode: hang\n      name: two\n'
    )
    project.write_spec(text)
    victim = cli_process("compile", str(project.spec), "--all", "-j", "2", "--json")
    pids = _wait_for_pids(forking, victim) + _wait_for_pids(second, victim)
    victim.send_signal(signal.SIGTERM)
    out, err = victim.communicate(timeout=120)
    assert victim.returncode == 143, err
    assert "Traceback" not in err
    _assert_gone(pids)
    assert cli("ls", "--json").json() == []
