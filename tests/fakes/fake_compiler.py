#!/usr/bin/env python3
"""A stand-in compiler that honours the BinaryCompilerAdapter contract, for tests only.

It is what a vendor compiler looks like from rmbuild's side: argv in, files in ``--out``, a log
on stdout, an exit code. Options select the failure modes the error-path tests need; the
``FAKE_COMPILER_*`` environment variables change its behaviour *without* changing the argv (so
without changing the action key), which the SIGKILL and concurrency tests rely on.

    --out DIR        where the declared outputs go (model.bin, argv.json)
    --mode MODE      ok | fail | hang | no-output
    --lines N        print N numbered log lines first ("log line 1" .. "log line N")
    --sleep S        sleep S seconds before writing outputs (makes two builds overlap)
    --counter FILE   append one line per invocation (counts compiler runs)
    --marker FILE    write this process's pid to FILE once started
    anything else    ignored (echoed into argv.json, e.g. --name VALUE)

    FAKE_COMPILER_HANG=S     sleep S seconds after the marker is written (any mode)
    FAKE_COMPILER_MARKER=F   like --marker
    FAKE_COMPILER_COUNTER=F  like --counter
"""

from __future__ import annotations

import json
import os
import sys
import time


def _opt(argv: list[str], name: str, default: str | None = None) -> str | None:
    if name in argv:
        i = argv.index(name)
        if i + 1 < len(argv):
            return argv[i + 1]
    return default


def main(argv: list[str]) -> int:
    mode = _opt(argv, "--mode", "ok")
    out = _opt(argv, "--out")
    lines = int(_opt(argv, "--lines", "0") or 0)
    sleep = float(_opt(argv, "--sleep", "0") or 0)
    counter = _opt(argv, "--counter") or os.environ.get("FAKE_COMPILER_COUNTER")
    marker = _opt(argv, "--marker") or os.environ.get("FAKE_COMPILER_MARKER")

    if counter:
        with open(counter, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    if marker:
        with open(marker + ".tmp", "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)  # atomic: a reader never sees an empty pid
    for i in range(1, lines + 1):
        print(f"log line {i}", flush=True)
    if hang := os.environ.get("FAKE_COMPILER_HANG"):
        time.sleep(float(hang))
    if mode == "hang":
        time.sleep(3600)
    if sleep:
        time.sleep(sleep)
    if mode == "fail":
        print("fatal: the fake compiler failed on purpose", flush=True)
        return 3
    if mode == "no-output":
        print("done (but wrote nothing)", flush=True)
        return 0
    assert out is not None, "--out is required"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.bin"), "wb") as f:
        f.write(b"compiled:" + json.dumps(argv).encode())
    with open(os.path.join(out, "argv.json"), "w", encoding="utf-8") as f:
        json.dump(argv, f)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
