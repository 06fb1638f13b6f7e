"""`rmbuild ls --json` and piped `ls` on a big store: time to the first row, and peak memory.

    python bench/bench_ls_stream.py [--n 100000] [--runs 3] [--before REV] [--store DIR]

Fills one store's SQLite index with N artifacts (rows only: `ls` reads no blob; the metadata
has the shape and size of a real build's, as in bench_store_scale.py), then runs, as whole
processes reading their stdout through a pipe, round-robin --runs times each:

* ``after``: `rmbuild ls --json` and `rmbuild ls` (piped) of this checkout;
* ``before``: the same commands with ``rmbuild/cli/ls.py`` as it was at git revision --before
  (default: the last version before listings were streamed), loaded in place of this one;
* ``floor``: a process that imports rmbuild's CLI, opens the index with sqlite3 and prints
  the first row of the same query: the least any `ls` can take to its first row.

Per process: seconds to the first artifact row on the pipe, seconds to the end, CPU seconds
(user + sys: the steadier figure on a loaded machine) and peak RSS (the child's own
``ru_maxrss``, from ``wait4``). Linux counts in a child's peak the pages it
shared with its parent before ``exec``, so the store is filled by a process of its own and this
one imports nothing heavy: the floor's RSS shows what is left of that. Prints a Markdown table
with medians and the ratios after/before and after/floor (ratios: the machine is shared and
noisy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # bench_store_scale's metadata (imported by fill)
# The last ls.py that built the whole listing in memory before writing its first row.
BEFORE = "d5821e033d84a096181c6d532319488135f405f0"

RUN_LS = "import sys; from rmbuild.cli import main; sys.exit(main(sys.argv[1:]))"
RUN_BEFORE = """
import importlib.util, sys
import rmbuild.cli as cli
spec = importlib.util.spec_from_file_location("rmbuild.cli.ls_before", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
cli.COMMANDS["ls"] = (spec.name, cli.COMMANDS["ls"][1])
sys.exit(cli.main(sys.argv[2:]))
"""
FLOOR = """
import json, sqlite3, sys
import rmbuild.cli  # the CLI's own import cost, as every ls pays it
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
row = conn.execute(
    "SELECT key, model, target, backend, created_at, metadata FROM artifacts"
    " ORDER BY created_at DESC, key LIMIT 1"
).fetchone()
print(json.dumps({"id": row[0], "model": row[1]}))
"""


def fill(root: Path, n: int) -> None:
    """N artifacts' index rows (artifacts, artifact_uses) in the store at ``root``."""
    from bench_store_scale import _metadata

    from artifact_store import Store, index

    start = datetime.now(UTC) - timedelta(days=30)
    with Store(root) as store:
        artifacts: list[dict] = []
        uses: list[dict] = []

        def flush() -> None:
            with store._write() as conn:
                conn.execute(index.artifacts.insert(), artifacts)
                conn.execute(index.artifact_uses.insert(), uses)
            artifacts.clear()
            uses.clear()

        for i in range(n):
            key = f"{i:08x}" + "ab" * 28
            when = start + timedelta(seconds=i)
            model, target = f"model-{i % 50}", f"t{i % 7}"
            artifacts.append(
                {
                    "key": key,
                    "manifest_digest": "cd" * 32,
                    "model": model,
                    "target": target,
                    "backend": "onnxruntime",
                    "created_at": when,
                    "last_used_at": when,
                    "size": 1234 + i,
                    "metadata": _metadata(i, "ef" * 32),
                    "state": "ok",
                    "problem": None,
                }
            )
            uses.append({"key": key, "model": model, "target": target, "first_used_at": when})
            if len(artifacts) == 5000:
                flush()
        if artifacts:
            flush()


def measure(argv: list[str], env: dict[str, str], marker: bytes) -> tuple[float, float, int, float]:
    """(seconds to the first line holding ``marker``, seconds to the end, peak RSS bytes, CPU
    seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = None
    for line in proc.stdout:
        if first is None and marker in line:
            first = time.perf_counter() - t0
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    end = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or first is None:
        raise SystemExit(f"{argv[3:]} failed (exit {proc.returncode}, first row {first})")
    cpu = usage.ru_utime + usage.ru_stime
    return first, end, usage.ru_maxrss * 1024, cpu  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", default=BEFORE, help="git revision of the old ls.py")
    parser.add_argument("--store", type=Path, help="reuse (or fill) this store")
    parser.add_argument("--fill-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill_only:
        fill(args.store, args.n)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-ls-"))
    root = args.store or work / "store"
    if not (root / "index.sqlite").exists():
        t0 = time.perf_counter()
        fill_argv = [sys.executable, __file__, "--fill-only", "--n", str(args.n)]
        subprocess.run([*fill_argv, "--store", str(root)], check=True)
        print(f"filled {args.n} artifacts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    before = work / "ls_before.py"
    before.write_bytes(
        subprocess.run(
            ["git", "-C", str(REPO), "show", f"{args.before}:rmbuild/cli/ls.py"],
            check=True,
            capture_output=True,
        ).stdout
    )
    env = {**os.environ, "RMBUILD_STORE": str(root), "PYTHONPATH": str(REPO)}
    env.pop("RMBUILD_INDEX_URL", None)
    py = [sys.executable, "-c"]
    # The first row of a table is the line after the header; of JSON, the first "id".
    variants = {
        ("ls --json", "after"): ([*py, RUN_LS, "ls", "--json"], b'"id"'),
        ("ls --json", "before"): ([*py, RUN_BEFORE, str(before), "ls", "--json"], b'"id"'),
        ("ls (piped)", "after"): ([*py, RUN_LS, "ls"], b"model-"),
        ("ls (piped)", "before"): ([*py, RUN_BEFORE, str(before), "ls"], b"model-"),
        ("floor", "floor"): ([*py, FLOOR, str(root / "index.sqlite")], b'"id"'),
    }
    results: dict[tuple[str, str], list[tuple[float, float, int, float]]] = {
        v: [] for v in variants
    }
    for _ in range(args.runs):  # round-robin: every variant sees the same load
        for variant, (argv, marker) in variants.items():
            results[variant].append(measure(argv, env, marker))

    def med(variant: tuple[str, str], i: int) -> float:
        return statistics.median(r[i] for r in results[variant])

    floor_first = med(("floor", "floor"), 0)
    print(f"\nN = {args.n}, median of {args.runs} runs; floor (first row) {floor_first:.3f} s\n")
    print(
        "| command | first row: before → after | after/before | after/floor "
        "| to the end: before → after | CPU: before → after "
        "| peak RSS: before → after | RSS after/before |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for what in ("ls --json", "ls (piped)"):
        b, a = (what, "before"), (what, "after")
        print(
            f"| `rmbuild {what}` | {med(b, 0):.3f} s → **{med(a, 0):.3f} s** "
            f"| {med(a, 0) / med(b, 0):.3f}× | {med(a, 0) / floor_first:.2f}× "
            f"| {med(b, 1):.2f} s → {med(a, 1):.2f} s "
            f"| {med(b, 3):.2f} s → {med(a, 3):.2f} s "
            f"| {med(b, 2) / 2**20:.0f} MiB → **{med(a, 2) / 2**20:.0f} MiB** "
            f"| {med(a, 2) / med(b, 2):.3f}× |"
        )
    print(f"\nfloor peak RSS {med(('floor', 'floor'), 2) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
