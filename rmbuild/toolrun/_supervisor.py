"""Supervisor of one tool run: the only direct child rmbuild starts for a vendor tool.

Why it exists: PR_SET_PDEATHSIG reaches only a direct child, and a killed tool's
own children (``iree-compile``'s native binary under its Python wrapper, a compile server) were
left running as orphans. So rmbuild starts this small process instead, and it

* asks for SIGTERM when its parent (the rmbuild thread that started it) dies: a *catchable*
  signal, so that it can still clean up after ``kill -9`` of rmbuild;
* is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever the tool's tree orphans is
  reparented to it, not to init, so it can still be found and killed;
* starts the tool in a session (and process group) of its own;
* on the tool's exit, on the timeout, on SIGTERM/SIGINT/SIGHUP and on its parent's death, kills
  the whole tree (the tool's group, then every descendant found in /proc, reaping until it has
  no child left) and only then exits, so the log pipe closes only when nothing can write to it;
* reports what happened on a status pipe as JSON lines (never on the tool's stdout):
  ``{"event": "started", "pid": N}``, ``{"event": "spawn-error", "errno": E, "message": M}``,
  ``{"event": "end", "reason": "exit"|"timeout"|"signal"|"parent-died", ...}``.

It is run as a file (``python -I -S _supervisor.py``), never imported by rmbuild, and imports
only a few standard modules, so it starts in milliseconds. Its own environment is the tool's
(already scrubbed) environment, passed through unchanged; like rmbuild, it makes itself
non-dumpable (PR_SET_DUMPABLE 0) before the tool starts.

Usage: ``_supervisor.py STATUS_FD PARENT_PID TIMEOUT_S -- ARGV...`` (TIMEOUT_S 0: none).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WATCHED = {signal.SIGCHLD, *STOP_SIGNALS}
# The tool starts with default dispositions and an empty mask whatever this process (or
# Python, which ignores SIGPIPE and SIGXFSZ) had set; as subprocess's restore_signals does.
TOOL_DEFAULT_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGCHLD,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
)
# How long to keep killing a tree whose members do not die (a process stuck in the kernel).
KILL_PATIENCE_S = 30.0


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: no subreaper, no parent-death signal
        return False


def _parents() -> dict[int, int]:
    """pid -> ppid of every process visible in /proc."""
    table: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            table[int(name)] = int(fields[1])
    return table


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(tool_pid: int | None) -> bool:
    """SIGKILL the tool's group and every descendant of this process; reap them all.

    Repeats until this process has no child left: a member that forked meanwhile is found on
    the next round, and orphans come back to us (we are their subreaper). False if some
    process would not die within KILL_PATIENCE_S.
    """
    deadline = time.monotonic() + KILL_PATIENCE_S
    while True:
        if tool_pid is not None:
            try:
                os.killpg(tool_pid, signal.SIGKILL)
            except OSError:
                pass  # the group is empty already
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            return True  # nothing left below us
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


class _Status:
    """The status pipe; a vanished reader (rmbuild died) must not stop the cleanup."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        if fd >= 0:
            os.set_inheritable(fd, False)  # the tool must not hold it open

    def send(self, **event: object) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, (json.dumps(event) + "\n").encode())
        except OSError:
            self.fd = -1


def main(args: list[str]) -> int:
    if len(args) < 5 or args[3] != "--":
        sys.stderr.write("usage: _supervisor.py STATUS_FD PARENT_PID TIMEOUT_S -- ARGV...\n")
        return 2
    status = _Status(int(args[0]))
    parent, timeout, argv = int(args[1]), float(args[2]), args[4:]

    # Block first, so a signal that comes before we wait for it stays pending, not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    for signo in STOP_SIGNALS:
        signal.signal(signo, signal.SIG_DFL)  # an inherited SIG_IGN must not hide them
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # Non-dumpable, as rmbuild is: the tool (same user) can then neither ptrace this process
    # (and forge its status pipe) nor read its memory. The tool is dumpable again after exec.
    _prctl(PR_SET_DUMPABLE, 0)
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        status.send(event="end", reason="parent-died", returncode=None, signal=None)
        return 128 + signal.SIGTERM

    try:
        tool = os.posix_spawnp(
            argv[0],
            argv,
            dict(os.environ),
            setsid=True,
            setsigmask=(),
            setsigdef=TOOL_DEFAULT_SIGNALS,
        )
    except OSError as exc:
        status.send(event="spawn-error", errno=exc.errno, message=exc.strerror or str(exc))
        return 127
    status.send(event="started", pid=tool)

    deadline = time.monotonic() + timeout if timeout > 0 else None
    reason, stop_signal, wait_status = "exit", None, None
    while wait_status is None:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            reason = "timeout"
            break
        # Wake at least once a second to notice a dead parent should PDEATHSIG be unavailable.
        pause = 1.0 if deadline is None else min(1.0, deadline - now)
        info = signal.sigtimedwait(WATCHED, pause)
        if info is None:
            if os.getppid() != parent:
                reason = "parent-died"
                break
            continue
        if info.si_signo != signal.SIGCHLD:
            reason, stop_signal = "signal", info.si_signo
            if os.getppid() != parent:
                reason = "parent-died"
            break
        try:
            while True:
                pid, code = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if pid == tool:
                    wait_status = code
        except ChildProcessError:
            pass

    # Whatever the tool left running (a daemon holding the log pipe, a stray worker, a native
    # binary under a wrapper) dies now: nothing outlives a build.
    clean = kill_tree(tool)
    returncode = sig = None
    if wait_status is not None:
        if os.WIFSIGNALED(wait_status):
            sig = os.WTERMSIG(wait_status)
        else:
            returncode = os.waitstatus_to_exitcode(wait_status)
    status.send(
        event="end",
        reason=reason,
        returncode=returncode,
        signal=sig,
        stop_signal=stop_signal,
        clean=clean,
    )
    if returncode is not None:
        return returncode
    if sig is not None:
        return 128 + sig
    return 124 if reason == "timeout" else 128 + (stop_signal or signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
