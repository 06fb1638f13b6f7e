"""Serving speed: ``rmbuild serve`` through the openai client against the in-process session on
the same artifact, measured in the same run.

    python bench/bench_serve.py [--tokens 128] [--streams 8] [--reps 5] [--vllm-url URL]

* one stream: served tokens/s (openai client, streaming) vs the in-process session's, run
  interleaved; the baseline is the faster of the runtime's default threads and the server's
  thread count; target >= 0.9x; and the same through a minimal HTTP client (no SDK), which
  shows the server's own cost apart from the openai client's;
* N concurrent streams: aggregate tokens/s vs one stream's; target >= 4x at 8;

Each rep runs the baselines, one stream and N streams back to back, and each ratio is the median
of the reps' own ratios (the machines are shared: their speed drifts between minutes).
* time to first token, p50 and p99, at 1, 8 and 32 concurrent streams;
* with ``--vllm-url`` (a vLLM server already serving the same model, e.g. ``.ci/vllm.sh``), the
  same figures for it, in the same run.

Every request asks for exactly ``--tokens`` tokens (``ignore_eos``, vLLM's extension, which
rmbuild's server takes too). Each server gets one client for the whole run, as an application
holds one (its connection kept alive). The example model is built into a temporary store first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "examples" / "tiny-llama" / "model.yaml"
PROMPT = "The future of AI is"


def build(store_dir: Path) -> str:
    from artifact_store import Store
    from rmbuild.build import compile_spec

    store = Store(store_dir)
    try:
        (result,) = compile_spec(SPEC, ["cpu"], store=store)
        return result.artifact.key
    finally:
        store.close()


class InProcess:
    """The in-process baseline: the same artifact loaded in this process, generating ids."""

    def __init__(self, store_dir: Path, key: str, tokens: int, **options: object) -> None:
        import rmbuild
        from artifact_store import Store

        self.session = rmbuild.load(key, store=Store(store_dir), **options)
        self.session.eos_token_ids = set()
        self.ids = self.session.tokenizer.encode(PROMPT)
        self.tokens = tokens
        self.once()  # warm up

    def once(self) -> float:
        """Tokens/s of one greedy generation of ``tokens`` tokens."""
        t0 = time.perf_counter()
        n = sum(1 for _ in self.session.generate_ids(self.ids, self.tokens))
        assert n == self.tokens
        return n / (time.perf_counter() - t0)

    def batched(self, rows: int) -> float:
        """Aggregate tokens/s of ``rows`` sequences decoding ``tokens`` steps together in the
        runtime's own batch (no server, no sampling, no text): what batching can give at best."""
        import numpy as np

        from rmbuild.runtime.batching import Batch

        step = self.session.step_fn
        batch = Batch(step)
        for _ in range(rows):
            step.reset()
            step.step(np.asarray(self.ids, dtype=np.int64))
            batch.add(step.snapshot())
        last = [0] * rows
        t0 = time.perf_counter()
        for _ in range(self.tokens):
            last = batch.step(last).argmax(axis=1).tolist()
        return rows * self.tokens / (time.perf_counter() - t0)


async def stream_one(client, model: str, tokens: int) -> tuple[float, float, int]:  # noqa: ANN001
    """(time to first token, total seconds, tokens) of one streamed completion."""
    t0 = time.perf_counter()
    first = None
    n = 0
    stream = await client.completions.create(
        model=model,
        prompt=PROMPT,
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text and first is None:
            first = time.perf_counter() - t0
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
    return first or 0.0, time.perf_counter() - t0, n


class Served:
    """One server and the one client an application would hold for it (its connections
    kept alive between requests)."""

    def __init__(self, url: str) -> None:
        import openai

        self.url = url
        self.client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
        self.model = model_of(url)

    async def concurrent(self, streams: int, tokens: int) -> dict[str, float]:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(stream_one(self.client, self.model, tokens) for _ in range(streams))
        )
        wall = time.perf_counter() - t0
        ttfts = sorted(r[0] for r in results)
        total = sum(r[2] for r in results)
        return {
            "tok_s": total / wall,
            "ttft_p50": statistics.median(ttfts),
            "ttft_p99": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
            "tokens": total,
        }


class MinimalClient:
    """One stream over one kept-alive HTTP/1.1 connection, read with asyncio's streams and
    ``json.loads`` per event: no SDK. The openai client's own work per request (building it,
    its pydantic objects per chunk) runs on the same two cores as the server; this client
    shows what is left when that is taken out, i.e. the server's own cost."""

    def __init__(self, url: str, model: str) -> None:
        found = re.match(r"http://\[?([^\]/]+?)\]?:(\d+)(/.*)$", url)
        assert found, url
        self.host, self.port, self.base = found.group(1), int(found.group(2)), found.group(3)
        self.model = model
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def stream(self, tokens: int) -> float:
        """Tokens/s of one streamed completion of ``tokens`` tokens."""
        import json

        if self.conn is None:
            self.conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.conn
        body = json.dumps(
            {
                "model": self.model,
                "prompt": PROMPT,
                "max_tokens": tokens,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
                "ignore_eos": True,
            }
        ).encode()
        t0 = time.perf_counter()
        writer.write(
            f"POST {self.base}/completions HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert b"transfer-encoding: chunked" in head.lower(), head
        buffer, n = b"", 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            buffer += data[:-2]
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.startswith(b"data: {"):
                    usage = json.loads(event[6:]).get("usage")
                    if usage:
                        n = usage["completion_tokens"]
        assert n == tokens, n
        return n / (time.perf_counter() - t0)


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of process ``pid``: its main thread (the event loop and
    HTTP) and its other threads (the engine, the runtime's own)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"main thread (HTTP)": 0.0, "other threads (engine)": 0.0}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        text = stat.read_text()
        fields = text[text.rindex(")") + 2 :].split()
        name = "main thread (HTTP)" if stat.parent.name == str(pid) else "other threads (engine)"
        out[name] += (int(fields[11]) + int(fields[12])) / tick
    return out


async def cpu_per_request(served: Served, pid: int, tokens: int, n: int = 20) -> None:
    """Where one stream's CPU goes: the server's threads and this client, per request."""
    import resource

    def own() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    before, mine, t0 = _thread_cpu(pid), own(), time.perf_counter()
    for _ in range(n):
        await served.concurrent(1, tokens)
    wall = (time.perf_counter() - t0) / n
    after, mine = _thread_cpu(pid), (own() - mine) / n
    server = {k: (after[k] - before.get(k, 0.0)) / n for k in after}
    parts = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in server.items())
    print(
        f"one stream, per request: wall {wall * 1e3:.1f} ms; CPU: server {parts}; "
        f"client {mine * 1e3:.1f} ms"
    )


def start_server(
    store_dir: Path, key: str, chunk_interval: float | None = None
) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "RMBUILD_STORE": str(store_dir)}
    log = store_dir.parent / "serve.log"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "rmbuild"),
            "serve",
            key,
            "--port",
            "0",
            "--max-running",
            "32",
            "--max-queue",
            "64",
            *(["--chunk-interval", str(chunk_interval)] if chunk_interval is not None else []),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    return proc, announced(proc, log, "rmbuild serve")


def announced(proc: subprocess.Popen[str], log: Path, what: str) -> str:
    """The base URL a starting server prints to ``log`` (a SystemExit if it never does)."""
    for _ in range(1200):
        found = re.search(r"at (http://\S+/v1)", log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited:\n{log.read_text()}")
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def model_of(url: str) -> str:
    import httpx

    return httpx.get(f"{url}/models", timeout=30).json()["data"][0]["id"]


async def measure(args: argparse.Namespace, store_dir: Path, key: str, url: str, pid: int) -> None:
    from rmbuild.serve.server import serving_threads

    # The baseline is the faster of the two ways this process can run the artifact: the
    # runtime's own thread default, and the thread count the server uses.
    local = {
        "default threads": InProcess(store_dir, key, args.tokens),
        f"{serving_threads()} thread(s), as served": InProcess(
            store_dir, key, args.tokens, intra_op_threads=serving_threads()
        ),
    }
    served = Served(url)
    await served.concurrent(1, args.tokens)  # warm up: the connection, the first request
    minimal = MinimalClient(url, served.model)
    await minimal.stream(args.tokens)
    # Each rep measures the in-process baselines, one served stream and N served streams back
    # to back, and the ratios are taken within the rep: on a shared machine whose speed drifts
    # from minute to minute, a ratio of two medians taken minutes apart measures the drift.
    rates: dict[str, list[float]] = {name: [] for name in local}
    one_runs, many_runs, vs_local, vs_one, bound, bare = [], [], [], [], [], []
    for _ in range(args.reps):
        here = {name: baseline.once() for name, baseline in local.items()}
        one = (await served.concurrent(1, args.tokens))["tok_s"]
        bare.append(await minimal.stream(args.tokens) / max(here.values()))
        many = await served.concurrent(args.streams, args.tokens)
        runtime = local[f"{serving_threads()} thread(s), as served"]
        bound.append(runtime.batched(args.streams) / runtime.batched(1))
        for name, rate in here.items():
            rates[name].append(rate)
        one_runs.append(one)
        many_runs.append(many)
        vs_local.append(one / max(here.values()))
        vs_one.append(many["tok_s"] / one)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, rate in medians.items():
        print(f"in-process session, {name:24s}: {rate:8.0f} tok/s")
    one = statistics.median(one_runs)
    print(
        f"rmbuild serve, 1 stream      : {one:8.0f} tok/s  = {statistics.median(vs_local):.2f}x "
        f"in-process (median of {args.reps} same-rep ratios, the faster baseline of each rep)"
    )
    print(
        f"rmbuild serve, 1 stream, minimal HTTP client (no SDK): "
        f"{statistics.median(bare):.2f}x in-process (median of same-rep ratios)"
    )
    rows = {args.streams: {k: statistics.median(r[k] for r in many_runs) for k in many_runs[0]}}
    runs = [await served.concurrent(32, args.tokens) for _ in range(3)]
    rows[32] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    agg = rows[args.streams]["tok_s"]
    print(
        f"rmbuild serve, {args.streams} streams     : {agg:8.0f} tok/s aggregate "
        f"= {statistics.median(vs_one):.2f}x one stream (median of same-rep ratios)"
    )
    print(
        f"the runtime's own batch, {args.streams} rows vs 1 (no server): "
        f"{statistics.median(bound):.2f}x (median of same-rep ratios): the most batching can give"
    )
    ttft1 = [await served.concurrent(1, args.tokens) for _ in range(5)]
    print("TTFT (s)              p50      p99")
    print(
        f"  1 stream        {statistics.median(r['ttft_p50'] for r in ttft1):8.4f} "
        f"{max(r['ttft_p50'] for r in ttft1):8.4f}"
    )
    for n, r in rows.items():
        print(f"  {n:2d} streams      {r['ttft_p50']:8.4f} {r['ttft_p99']:8.4f}")
    await cpu_per_request(served, pid, args.tokens)
    await served.client.close()
    if args.vllm_url:
        vllm = Served(args.vllm_url)
        await vllm.concurrent(1, args.tokens)
        v1_runs = [await vllm.concurrent(1, args.tokens) for _ in range(args.reps)]
        v1 = statistics.median(r["tok_s"] for r in v1_runs)
        vn = await vllm.concurrent(args.streams, args.tokens)
        v32 = await vllm.concurrent(32, args.tokens)
        print(
            f"vLLM, 1 stream               : {v1:8.0f} tok/s; rmbuild = {one / v1:.2f}x; TTFT p50 "
            f"{statistics.median(r['ttft_p50'] for r in v1_runs):.4f} "
            f"p99 {max(r['ttft_p50'] for r in v1_runs):.4f}"
        )
        print(
            f"vLLM, {args.streams} streams              : {vn['tok_s']:8.0f} tok/s; "
            f"rmbuild = {agg / vn['tok_s']:.2f}x; TTFT p50 {vn['ttft_p50']:.4f} "
            f"p99 {vn['ttft_p99']:.4f}"
        )
        print(
            f"vLLM, 32 streams             : {v32['tok_s']:8.0f} tok/s; TTFT p50 "
            f"{v32['ttft_p50']:.4f} p99 {v32['ttft_p99']:.4f}"
        )
        await vllm.client.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--chunk-interval", type=float, help="the server's --chunk-interval (default: its own)"
    )
    ap.add_argument("--vllm-url", help="base URL of a vLLM server on the same model (…/v1)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        key = build(store_dir)
        proc, url = start_server(store_dir, key, args.chunk_interval)
        try:
            asyncio.run(measure(args, store_dir, key, url, proc.pid))
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
