"""Benchmarks of the build spine, each against a baseline measured in the same run.

    python bench/bench_spine.py [--only hit,noop,help,bigfile,tokens,classhit] [--big-gib 2]
                                [--runs 11] [--class-store DIR]

* hit:     `rmbuild compile --target cpu` cache hit (median of --runs whole-process runs,
           interleaved with the baselines of the same run: `python -c pass`, `rmbuild --help`,
           and the same hit with the plan cache off, RMBUILD_NO_PLAN_CACHE=1), and the cold
           build with an empty cache.
* noop:    `rmbuild compile` of the example's six CPU-buildable targets, all cached (target
           <= 0.2 s), with the plan cache on and off, interleaved the same way.
* help:    `rmbuild --help` (median of 10) vs a bare `python -c pass`.
* bigfile: a 2 GiB weights file in the model folder: first-time hashing by the store vs a plain
           hashlib sha256 loop over the same file, then the cache-hit time with it present.
* tokens:  tokens/s of an rmbuild session vs a plain onnxruntime greedy loop on the same files.
* classhit: `rmbuild compile --target npu` (a resource class: the example's rngd and
           openvino-npu targets) cache hit, interleaved with the hit of the named target
           `--target rngd`, the class with the plan cache off, and `python -c pass`. Needs the
           furiosa toolchain (`rmbuild toolchain install furiosa`); not in the default set. With
           `--class-store DIR` (a store that holds the class's build) it starts at the hits;
           otherwise it first builds cold (minutes: a real RNGD compile).

Prints a table; timings are wall-clock on this machine and noisy, so read the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny-llama"
RMBUILD = str(Path(sys.executable).parent / "rmbuild")


def wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def median_wall(cmd: list[str], env: dict[str, str], n: int) -> float:
    return statistics.median(wall(cmd, env) for _ in range(n))


# The example's targets this CPU machine builds (rngd needs the furiosa toolchain and a cross
# gcc; openvino-npu is left out: it needs the NPU plugin).
NOOP_TARGETS = ("cpu", "onnx", "cpu-slim", "openvino-cpu", "iree-cpu", "iree-cuda")


def wall_and_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + sys of the child) of one whole-process run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = wall(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def interleaved(cmds: dict[str, tuple[list[str], dict[str, str]]], n: int) -> dict[str, float]:
    """Median wall time (``name``) and CPU time (``name`` with ``_cpu``) of each command, run
    round-robin n times so that every command sees the same load. On a loaded machine the
    CPU time (one thread: user + sys) is what the wall time would be on an idle one."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    cpus: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(n):
        for name, (cmd, env) in cmds.items():
            seconds, cpu = wall_and_cpu(cmd, env)
            times[name].append(seconds)
            cpus[name].append(cpu)
    out = {name: statistics.median(values) for name, values in times.items()}
    out.update({f"{name[:-2]}_cpu_s": statistics.median(v) for name, v in cpus.items()})
    return out


def bench_hit(work: Path, env: dict[str, str], runs: int = 11) -> dict[str, float]:
    spec = str(EXAMPLE / "model.yaml")
    env = {**env, "RMBUILD_STORE": str(work / "hit-store")}
    cmd = [RMBUILD, "compile", spec, "--target", "cpu"]
    cold = wall(cmd, env)
    wall(cmd, env)  # the first hit goes through the full path and writes the plan cache
    got = interleaved(
        {
            "python_pass_s": ([sys.executable, "-c", "pass"], env),
            "help_s": ([RMBUILD, "--help"], env),
            "cache_hit_s": (cmd, env),
            "cache_hit_full_path_s": (cmd, {**env, "RMBUILD_NO_PLAN_CACHE": "1"}),
        },
        runs,
    )
    return {
        "cold_build_s": cold,
        **got,
        "hit_over_full_path": got["cache_hit_s"] / got["cache_hit_full_path_s"],
    }


def bench_classhit(
    work: Path, env: dict[str, str], runs: int, store: Path | None
) -> dict[str, float]:
    spec = str(EXAMPLE / "model.yaml")
    env = {**env, "RMBUILD_STORE": str(store or work / "class-store")}
    cls = [RMBUILD, "compile", spec, "--target", "npu"]
    first = subprocess.run(cls, env=env, capture_output=True, text=True)
    if first.returncode != 0:
        raise SystemExit(f"classhit: `--target npu` cannot be built here:\n{first.stderr}")
    wall(cls, env)  # the first hit goes through the full path and writes the plan cache
    got = interleaved(
        {
            "python_pass_s": ([sys.executable, "-c", "pass"], env),
            "class_hit_s": (cls, env),
            "named_hit_s": ([RMBUILD, "compile", spec, "--target", "rngd"], env),
            "class_hit_full_path_s": (cls, {**env, "RMBUILD_NO_PLAN_CACHE": "1"}),
        },
        runs,
    )
    return {
        **got,
        "class_over_named": got["class_hit_s"] / got["named_hit_s"],
        "class_over_full_path": got["class_hit_s"] / got["class_hit_full_path_s"],
    }


def bench_noop(work: Path, env: dict[str, str], runs: int = 11) -> dict[str, float]:
    spec = str(EXAMPLE / "model.yaml")
    env = {**env, "RMBUILD_STORE": str(work / "noop-store")}
    cmd = [RMBUILD, "compile", spec, "-j", "2"]
    for target in NOOP_TARGETS:
        cmd += ["--target", target]
    noop = [c for c in cmd if c not in ("-j", "2")]
    cold = wall(cmd, env)
    wall(noop, env)  # a no-op through the full path (re)writes every target's plan cache entry
    got = interleaved(
        {
            "python_pass_s": ([sys.executable, "-c", "pass"], env),
            "noop_s": (noop, env),
            "noop_full_path_s": (noop, {**env, "RMBUILD_NO_PLAN_CACHE": "1"}),
        },
        runs,
    )
    return {"targets": float(len(NOOP_TARGETS)), "cold_build_j2_s": cold, **got}


def bench_help(env: dict[str, str]) -> dict[str, float]:
    bare = median_wall([sys.executable, "-c", "pass"], env, 10)
    help_ = median_wall([RMBUILD, "--help"], env, 10)
    return {"python_pass_s": bare, "help_s": help_, "help_over_python": help_ / bare}


def _plain_sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def bench_bigfile(work: Path, env: dict[str, str], gib: float) -> dict[str, float]:
    from artifact_store import Store

    project = work / "big"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.py", "corpus.txt"))
    big = project / "model" / "extra-weights.bin"
    chunk = os.urandom(1 << 24)
    with open(big, "wb") as f:
        for _ in range(int(gib * 64)):
            f.write(chunk)
    plain, ours = [], []
    for i in range(3):  # interleaved, page cache warm for both after the first write
        t0 = time.perf_counter()
        expected = _plain_sha256(big)
        plain.append(time.perf_counter() - t0)
        with Store(work / f"hash-store-{i}") as store:  # fresh store: nothing cached
            t0 = time.perf_counter()
            got = store.hash_files([big])[big]
            ours.append(time.perf_counter() - t0)
        assert got == expected
    # The stat cache does not trust files younger than its racy window; age the file.
    old = time.time() - 60
    os.utime(big, (old, old))
    benv = {**env, "RMBUILD_STORE": str(work / "big-store")}
    spec = str(project / "model.yaml")
    wall([RMBUILD, "compile", spec, "--target", "cpu"], benv)
    hit = median_wall([RMBUILD, "compile", spec, "--target", "cpu"], benv, 5)
    big.unlink()
    p, o = statistics.median(plain), statistics.median(ours)
    return {
        "file_gib": gib,
        "plain_hashlib_s": p,
        "store_hash_s": o,
        "hash_speed_vs_hashlib": p / o,
        "cache_hit_with_big_file_s": hit,
    }


def bench_tokens(work: Path, env: dict[str, str], tokens: int = 200) -> dict[str, float]:
    import numpy as np
    import onnxruntime as ort

    from artifact_store import Store
    from rmbuild.build import build
    from rmbuild.declare.spec import load_model_spec
    from rmbuild.loading import load

    store = Store(work / "tok-store")
    record = build(load_model_spec(EXAMPLE / "model.yaml"), "cpu", store=store).artifact
    session = load(record.key, store=store)
    session.eos_token_ids = set()  # both loops generate exactly `tokens` tokens
    tree = store.materialize(record.key)
    prompt_ids = session.tokenizer.encode("The future of AI is")

    # The baseline: a plain onnxruntime greedy loop written the obvious way.
    sess = ort.InferenceSession(str(tree / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    past_names = [n for n in names if n.startswith("past_key_values.")]
    outs = ["logits"] + [n.replace("past_key_values.", "present.") for n in past_names]
    shape = {i.name: i.shape for i in sess.get_inputs()}

    def plain_loop() -> list[int]:
        past = {n: np.zeros((1, shape[n][1], 0, shape[n][3]), np.float32) for n in past_names}
        ids = np.array([prompt_ids], dtype=np.int64)
        length, out = 0, []
        for _ in range(tokens):
            n = ids.shape[1]
            feeds = {
                "input_ids": ids,
                "attention_mask": np.ones((1, length + n), np.int64),
                "position_ids": np.arange(length, length + n, dtype=np.int64)[None],
                **past,
            }
            res = sess.run(outs, feeds)
            past = dict(zip(past_names, res[1:], strict=True))
            length += n
            token = int(np.argmax(res[0][0, -1]))
            out.append(token)
            ids = np.array([[token]], dtype=np.int64)
        return out

    def ours_loop() -> list[int]:
        return list(session.generate_ids(prompt_ids, tokens))

    assert plain_loop() == ours_loop(), "rmbuild and the plain loop disagree"
    plain_t, ours_t = [], []
    for _ in range(7):
        t0 = time.perf_counter()
        plain_loop()
        plain_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours_loop()
        ours_t.append(time.perf_counter() - t0)
    p, o = statistics.median(plain_t), statistics.median(ours_t)
    session.close()
    store.close()
    return {
        "tokens": tokens,
        "plain_ort_tok_s": tokens / p,
        "rmbuild_tok_s": tokens / o,
        "rmbuild_over_plain": p / o,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="hit,noop,help,bigfile,tokens")
    parser.add_argument("--runs", type=int, default=11, help="whole-process runs per figure")
    parser.add_argument("--big-gib", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--class-store", type=Path, help="classhit: a store holding the build")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    env = {k: v for k, v in os.environ.items() if k != "RMBUILD_STORE"}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rmbuild-bench-") as tmp:
        work = Path(tmp)
        env["RMBUILD_CONFIG_DIR"] = str(work / "config")
        if "hit" in wanted:
            results["hit"] = bench_hit(work, env, args.runs)
        if "noop" in wanted:
            results["noop"] = bench_noop(work, env, args.runs)
        if "help" in wanted:
            results["help"] = bench_help(env)
        if "bigfile" in wanted:
            results["bigfile"] = bench_bigfile(work, env, args.big_gib)
        if "tokens" in wanted:
            results["tokens"] = bench_tokens(work, env)
        if "classhit" in wanted:
            results["classhit"] = bench_classhit(work, env, args.runs, args.class_store)
    for name, values in results.items():
        print(f"[{name}]")
        for key, value in values.items():
            print(f"  {key:<28} {value:10.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
