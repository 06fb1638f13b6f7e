"""A/B of ``rmbuild serve`` between source trees (two commits), in the same run.

    git worktree add /tmp/before HEAD~1
    python bench/ab_serve.py /tmp/before . [--reps 41] [--streams 8] [--tokens 128]

Each tree is served by its own ``rmbuild serve`` (its ``rmbuild`` and ``artifact_store`` first
on ``PYTHONPATH``, this environment's packages underneath) on the same artifact, all started
before measuring and idle while another is measured. Each rep runs the in-process baseline, then
one stream and ``--streams`` streams against every server (through the openai client, as
``bench_serve.py``), alternating the servers' order from rep to rep. Printed per tree: the
medians, and each figure's ratio to the first tree's (median of the reps' own ratios). Run a
tree against itself (``. .``) to see this machine's noise on the same figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_serve import InProcess, Served, announced, build


def start(tree: Path, store_dir: Path, key: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "RMBUILD_STORE": str(store_dir), "PYTHONPATH": str(tree)}
    code = "import sys; from rmbuild.cli import main; sys.argv[0] = 'rmbuild'; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", key, "--port", "0", "--max-running", "32"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=store_dir.parent,  # not a tree: the tree on PYTHONPATH is the one imported
        text=True,
    )
    return proc, announced(proc, log, f"rmbuild serve ({tree})")


async def measure(args: argparse.Namespace, store_dir: Path, key: str, urls: list[str]) -> None:
    servers = [Served(url) for url in urls]
    local = InProcess(store_dir, key, args.tokens, intra_op_threads=1)
    for s in servers:  # warm up: connections, first requests
        await s.concurrent(1, args.tokens)
        await s.concurrent(args.streams, args.tokens)
    one: list[list[float]] = [[] for _ in servers]
    many: list[list[float]] = [[] for _ in servers]
    base: list[float] = []
    for rep in range(args.reps):
        base.append(local.once())
        order = range(len(servers)) if rep % 2 == 0 else reversed(range(len(servers)))
        for i in order:
            one[i].append((await servers[i].concurrent(1, args.tokens))["tok_s"])
            many[i].append((await servers[i].concurrent(args.streams, args.tokens))["tok_s"])
    for i, tree in enumerate(args.trees):
        vs_local = statistics.median(o / b for o, b in zip(one[i], base, strict=True))
        vs_one = statistics.median(m / o for m, o in zip(many[i], one[i], strict=True))
        rel_one = statistics.median(a / b for a, b in zip(one[i], one[0], strict=True))
        rel_many = statistics.median(a / b for a, b in zip(many[i], many[0], strict=True))
        print(
            f"{tree}: 1 stream {statistics.median(one[i]):6.0f} tok/s = {vs_local:.3f}x "
            f"in-process; {args.streams} streams {statistics.median(many[i]):6.0f} tok/s = "
            f"{vs_one:.2f}x one; against the first tree: {rel_one:.3f} / {rel_many:.3f}"
        )
    for s in servers:
        await s.client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", type=Path, help="source trees; the first is the baseline")
    ap.add_argument("--reps", type=int, default=41)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    args.trees = [t.resolve() for t in args.trees]
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        key = build(store_dir)
        procs = []
        try:
            urls = []
            for i, tree in enumerate(args.trees):
                proc, url = start(tree, store_dir, key, Path(tmp) / f"serve{i}.log")
                procs.append(proc)
                urls.append(url)
            asyncio.run(measure(args, store_dir, key, urls))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)


if __name__ == "__main__":
    main()
