"""Running one tool process under the supervisor, with its log streamed to a file.

rmbuild never starts a vendor tool directly: its direct child is ``_supervisor.py`` (a file run
by this interpreter with ``-I -S``, importing nothing of rmbuild), which starts the tool in a
session of its own and kills the tool's whole tree when the tool exits, on the timeout, when
rmbuild stops it (Ctrl-C, SIGTERM, an error of ours) and when rmbuild dies, even by ``kill -9``.
The supervisor's stdout/stderr, which the tool inherits, is a pipe that a reader
thread (the pump) copies into the log and keeps the last lines of; the pump alone closes the
log, so it is never closed under a write. A log that cannot be written (a full
disk) stops the tool and becomes :class:`~rmbuild.errors.DiskFull` carrying the tool's last
lines, kept in memory.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rmbuild.errors import (
    DiskFull,
    RmbuildError,
    StoreUnavailable,
    ToolError,
    ToolNotFound,
    ToolStopped,
    ToolTimeout,
    is_disk_full,
)

SUPERVISOR = Path(__file__).resolve().with_name("_supervisor.py")
TAIL_LINES = 20
# The supervisor kills and reaps the tree within its own patience (30 s for a process stuck in
# the kernel); rmbuild waits a little longer for it before it kills the supervisor itself.
STOP_PATIENCE_S = 40.0
# A supervisor that outlives its own timeout by this much is itself stuck.
BACKSTOP_S = 60.0
# Terminal control sequences: CSI (colours, cursor moves), OSC (titles, links) and the other
# escapes (charset selection, keypad modes). Vendor tools colour their output even into a pipe.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colour codes, cursor moves, titles)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def supervised(argv: list[str], *, status_fd: int = -1, timeout: float | None = None) -> list[str]:
    """The argv that runs ``argv`` under the supervisor (``-I -S``: isolated, no site).

    That argv names this process's pid, which the tool can read: this process is made
    non-dumpable first (toolenv.protect_process; the environment builders do it too), so the
    tool cannot read our ``/proc/<pid>/environ``."""
    from rmbuild.toolrun.toolenv import protect_process

    protect_process()
    return [
        sys.executable,
        "-I",
        "-S",
        str(SUPERVISOR),
        str(status_fd),
        str(os.getpid()),
        f"{timeout or 0:g}",
        "--",
        *argv,
    ]


@dataclass
class Finished:
    """How a supervised tool ended."""

    returncode: int
    duration_s: float
    tail: list[str] = field(default_factory=list)


class _Pump:
    """Copies the tool's merged output into the log; keeps the tail; owns closing the log."""

    def __init__(
        self,
        stream: object,
        log: object,
        on_line: Callable[[str], None] | None,
        on_write_error: Callable[[], None],
    ) -> None:
        self.stream = stream
        self.log = log
        self.on_line = on_line
        self.on_write_error = on_write_error
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.write_error: OSError | None = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="rmbuild-log-pump", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def lines(self) -> list[str]:
        with self._lock:
            return list(self.tail)

    def _run(self) -> None:
        try:
            for raw in iter(self.stream.readline, b""):  # type: ignore[attr-defined]
                if self.write_error is None:
                    try:
                        self.log.write(raw)  # type: ignore[attr-defined]
                    except OSError as exc:
                        # Keep reading (the tail stays in memory, the tool never blocks on a
                        # full pipe) but stop the tool: its log is lost from here on.
                        self.write_error = exc
                        self.on_write_error()
                # The log keeps the tool's bytes as written (``less -R`` shows its colours); the
                # line rmbuild shows again (live status, heartbeat, an error's tail) is text.
                # A progress bar redraws itself after "\r": the part a terminal would show.
                line = strip_ansi(raw.decode("utf-8", "replace")).rstrip().rsplit("\r", 1)[-1]
                if not line:
                    continue
                with self._lock:
                    self.tail.append(line)
                if self.on_line is not None:
                    try:
                        self.on_line(line)
                    except Exception:  # noqa: BLE001 - a broken reporter must not stop the log
                        self.on_line = None
        except (OSError, ValueError):
            pass  # the pipe went away under us: nothing more to read
        finally:
            for closable in (self.log, self.stream):
                try:
                    closable.close()  # type: ignore[attr-defined]
                except OSError as exc:
                    if self.write_error is None and closable is self.log:
                        self.write_error = exc

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def _open_log(path: Path) -> BinaryIO:
    # Unbuffered: a write error (a full disk) shows at the write, not at a later flush/close.
    return open(path, "wb", buffering=0)  # noqa: SIM115 - the pump closes it


def _log_error(exc: OSError, log_path: Path, tool: str, tail: list[str]) -> RmbuildError:
    context = []
    if tail:
        context.append(f"last lines of {tool} (kept in memory):")
        context.extend(f"  {line}" for line in tail)
    if is_disk_full(exc):
        error = DiskFull.from_oserror(exc, log_path, what="writing the log of the tool to")
        error.context[:0] = context
        return error
    return StoreUnavailable(
        f"cannot write the log {log_path} of {tool}: {exc.strerror or exc}", context=context
    )


def _read_events(fd: int) -> dict[str, dict[str, object]]:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    events: dict[str, dict[str, object]] = {}
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events[str(event.get("event"))] = event
    return events


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask the supervisor to kill the tool's tree and wait until it has; kill it otherwise."""
    try:
        proc.send_signal(signal.SIGTERM)
    except OSError:
        pass
    try:
        proc.wait(timeout=STOP_PATIENCE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _kill_group(events: dict[str, dict[str, object]]) -> None:
    # Last resort when the supervisor itself had to be killed: the tool leads its own group.
    pid = events.get("started", {}).get("pid")
    if isinstance(pid, int):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def run_supervised(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float | None,
    tool: str,
    hint: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Finished:
    """Run ``argv`` under the supervisor, its output into ``log_path``; raise on any failure.

    Raises ToolNotFound (cannot start), ToolTimeout, ToolError (non-zero exit, killed by a
    signal), DiskFull (the log could not be written); re-raises KeyboardInterrupt and any other
    exception of ours after the tool's tree is dead.
    """
    try:
        log = _open_log(log_path)
    except OSError as exc:
        raise _log_error(exc, log_path, tool, []) from None
    try:
        log.write(f"$ {' '.join(argv)}\n".encode())
    except OSError as exc:
        log.close()
        raise _log_error(exc, log_path, tool, []) from None

    status_r, status_w = os.pipe()
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            supervised(argv, status_fd=status_w, timeout=timeout),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(status_w,),
        )
    except OSError as exc:
        log.close()
        os.close(status_r)
        raise ToolNotFound(
            f"cannot start {tool}: {exc.strerror or exc}", tool=tool, log_path=log_path, hint=hint
        ) from None
    finally:
        os.close(status_w)

    pump = _Pump(proc.stdout, log, on_line, lambda: _send(proc, signal.SIGTERM))
    pump.start()
    try:
        try:
            proc.wait(timeout=None if timeout is None else timeout + BACKSTOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()  # the supervisor is stuck; the tree goes below
            proc.wait()
    except BaseException:  # Ctrl-C, SIGTERM (the CLI raises it), any error of ours
        _stop(proc)
        pump.join(timeout=STOP_PATIENCE_S)
        _kill_group(_read_events(status_r))
        raise
    pump.join(timeout=STOP_PATIENCE_S)
    events = _read_events(status_r)
    duration = time.monotonic() - started
    tail = pump.lines()

    if pump.write_error is not None:
        raise _log_error(pump.write_error, log_path, tool, tail)
    if "spawn-error" in events:
        raise ToolNotFound(
            f"cannot start {tool}: {events['spawn-error'].get('message')}",
            tool=tool,
            log_path=log_path,
            hint=hint,
        )
    end = events.get("end")
    if end is None:  # the supervisor died without a word: never call that a success
        _kill_group(events)
        raise ToolError(
            f"the supervisor of {tool} ended unexpectedly (exit status {proc.returncode})",
            tool=tool,
            log_path=log_path,
            tail=tail,
        )
    if end.get("reason") == "timeout":
        raise ToolTimeout(
            f"{tool} did not finish within {timeout:g} s and was killed",
            tool=tool,
            log_path=log_path,
            tail=tail,
            hint="raise the profile's timeout if the model is large",
        )
    if end.get("reason") != "exit":
        raise ToolStopped(
            f"{tool} was stopped: its supervisor received {_signame(end.get('stop_signal'))}",
            tool=tool,
            log_path=log_path,
            tail=tail,
        )
    if isinstance(end.get("signal"), int):
        raise ToolError(
            f"{tool} was killed by {_signame(end['signal'])} (the error comes from the tool, "
            "not from rmbuild)",
            tool=tool,
            log_path=log_path,
            tail=tail,
        )
    returncode = int(end.get("returncode") or 0)  # type: ignore[call-overload]
    if returncode != 0:
        raise ToolError(
            f"{tool} failed with exit code {returncode} (the error comes from the tool, "
            "not from rmbuild)",
            tool=tool,
            log_path=log_path,
            tail=tail,
            returncode=returncode,
        )
    return Finished(returncode, duration, tail)


def _send(proc: subprocess.Popen[bytes], signo: int) -> None:
    try:
        proc.send_signal(signo)
    except OSError:
        pass


def _signame(signo: object) -> str:
    try:
        return signal.Signals(signo).name  # type: ignore[arg-type]
    except ValueError:
        return f"signal {signo}"
