"""The serving engine alone (no HTTP, no client) against the in-process session on the same
artifact, in the same process: what the engine's own per-token work costs.

    python bench/bench_engine.py [--tokens 128] [--reps 31] [--streams 8]

Each rep runs, back to back: the in-process session's greedy generation, one request through
the engine (consumed as a served stream consumes it: gathering tokens for the server's default
chunk interval), and ``--streams`` requests through it at once. Printed: tokens/s, the engine's
extra time per token against the in-process loop (median of the reps' own differences), and the
ratios.
The example model is built into a temporary store first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench_serve import PROMPT, InProcess, build


async def through_engine(engine, ids: list[int], tokens: int, streams: int, interval: float):  # noqa: ANN001, ANN201
    """Aggregate tokens/s of ``streams`` greedy requests through ``engine``."""
    from rmbuild.runtime.sampling import SamplingParams
    from rmbuild.serve.engine import Finished, Request, Token

    async def one() -> int:
        request = engine.submit(
            Request(
                prompt_ids=list(ids),
                max_tokens=tokens,
                params=SamplingParams(temperature=0),
                stream=True,
                ignore_eos=True,
            )
        )
        n = 0
        while True:
            if request.events.empty():
                await request.pause(interval)
            event = await request.events.get()
            if isinstance(event, Token):
                n += 1
            else:
                assert isinstance(event, Finished), event
                return n

    t0 = time.perf_counter()
    total = sum(await asyncio.gather(*(one() for _ in range(streams))))
    return total / (time.perf_counter() - t0)


async def measure(args: argparse.Namespace, store_dir: Path, key: str) -> None:
    from rmbuild.serve.app import CHUNK_INTERVAL
    from rmbuild.serve.engine import Engine
    from rmbuild.serve.server import serving_threads

    local = InProcess(store_dir, key, args.tokens, intra_op_threads=serving_threads())
    engine = Engine(local.session, max_running=max(8, args.streams))
    ids = local.session.tokenizer.encode(PROMPT)
    try:
        await through_engine(engine, ids, args.tokens, 1, CHUNK_INTERVAL)  # warm up
        base, one, many, extra = [], [], [], []
        for _ in range(args.reps):
            b = local.once()
            e = await through_engine(engine, ids, args.tokens, 1, CHUNK_INTERVAL)
            m = await through_engine(engine, ids, args.tokens, args.streams, CHUNK_INTERVAL)
            base.append(b)
            one.append(e)
            many.append(m / e)
            extra.append((1 / e - 1 / b) * 1e6)
    finally:
        engine.stop(30)
    threads = serving_threads()
    print(f"in-process session, {threads} thread(s): {statistics.median(base):8.0f} tok/s")
    print(
        f"engine, 1 request            : {statistics.median(one):8.0f} tok/s; "
        f"{statistics.median(e / b for e, b in zip(one, base, strict=True)):.2f}x "
        f"in-process; {statistics.median(extra):+.0f} µs per token (medians of same-rep figures)"
    )
    print(f"engine, {args.streams} requests at once  : {statistics.median(many):.2f}x one request")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--streams", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        key = build(store_dir)
        asyncio.run(measure(args, store_dir, key))


if __name__ == "__main__":
    main()
