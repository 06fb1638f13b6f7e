#!/usr/bin/env python3
"""A stand-in tool that leaves stubborn grandchildren behind, for the process-cleanup tests.

Like ``iree-compile``'s Python wrapper over its native binary, it starts
processes of its own: one plain child in its process group, and one daemon that left the group
and the session (double fork + setsid), so only a subreaper can still find it. Both ignore
SIGTERM, SIGINT and SIGHUP and hold the tool's stdout open. Tests only.

    --out DIR      where model.bin goes (mode ok)
    --marker FILE  written atomically once all are up: "TOOL_PID PLAIN_PID DAEMON_PID"
    --mode MODE    hang (default): sleep; spew: print log lines without end;
                   ok: write model.bin and exit 0 at once
    anything else  ignored (the test suite's fake template passes more)
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _opt(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def _stubborn() -> None:
    for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signo, signal.SIG_IGN)
    while True:
        time.sleep(60)


def main(argv: list[str]) -> int:
    mode = _opt(argv, "--mode", "hang")
    pids = _opt(argv, "--marker")
    out = _opt(argv, "--out")

    plain = os.fork()
    if plain == 0:
        _stubborn()
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        daemon = os.fork()
        if daemon == 0:
            _stubborn()
        os.write(write, str(daemon).encode())
        os._exit(0)
    os.waitpid(middle, 0)
    daemon_pid = int(os.read(read, 64))
    if pids:
        with open(pids + ".tmp", "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {plain} {daemon_pid}")
        os.replace(pids + ".tmp", pids)
    print("grandchildren started", flush=True)
    if mode == "ok":
        assert out is not None, "--out is required"
        with open(os.path.join(out, "model.bin"), "wb") as f:
            f.write(b"forked")
        return 0
    if mode == "spew":
        for i in range(10**9):  # a busy log when Ctrl-C lands
            print(f"spew line {i}", flush=True)
            time.sleep(0.001)
    time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
