"""Benchmarks of the OpenVINO and IREE backends and of parallel builds, each against a baseline
measured in the same run.

    python bench/bench_backends.py [--only onnxruntime,openvino,iree,parallel]
                                   [--tokens 200] [--reps 21]

* onnxruntime: tokens/s of rmbuild's ONNX Runtime session (the shared KV loop) vs a plain loop
            on ``onnxruntime.InferenceSession`` on the same model.onnx.
* openvino: tokens/s and load time of rmbuild's C-API session (libopenvino_c through ctypes) vs
            a plain loop on the openvino Python API, same IR, same run.
* iree:     tokens/s of rmbuild's IREE session vs a plain loop calling ``iree.runtime`` directly
            on the same .vmfb.
* parallel: `rmbuild compile --all -j 2` wall time vs the sum of the targets built one by one,
            each from an empty store (no sharing, no parallelism).

Both sides of each loop generate the same number of greedy tokens (EOS ignored), and are
checked to produce the same tokens before timing. Timings on a shared machine are noisy, so
each figure is the median over ``--reps`` interleaved pairs (rmbuild, vendor, rmbuild, vendor,
...; the order flips every pair), and the ratio is the median of the per-pair ratios, which
cancels drifts that hit both sides of a pair alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "examples" / "tiny-llama" / "model.yaml"
RMBUILD = str(Path(sys.executable).parent / "rmbuild")
PROMPT = "The future of AI is"


def interleaved(
    a: Callable[[], object], b: Callable[[], object], reps: int = 7
) -> tuple[float, float, float]:
    """Median seconds of ``a`` and ``b`` and the median of the per-pair ratios t_b / t_a, run in
    adjacent pairs (order flipped every pair) after one warm-up each."""
    a(), b()
    ta, tb, ratios = [], [], []
    for i in range(reps):
        pair = {}
        for name, fn in (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a)):
            t0 = time.perf_counter()
            fn()
            pair[name] = time.perf_counter() - t0
        ta.append(pair["a"])
        tb.append(pair["b"])
        ratios.append(pair["b"] / pair["a"])
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def _build(store, target: str) -> tuple[Path, object]:  # noqa: ANN001
    from rmbuild.build import build
    from rmbuild.declare.spec import load_model_spec

    record = build(load_model_spec(SPEC), target, store=store).artifact
    return store.materialize(record.key), record


def _session(store, record, **options):  # noqa: ANN001, ANN202
    from rmbuild.loading import load

    session = load(record.key, store=store, **options)
    session.eos_token_ids = set()
    return session


def _kv_dims(session) -> tuple[int, int]:  # noqa: ANN001
    spec = session.step_fn.layout.past[0]
    return int(spec.shape[1]), int(spec.shape[3])


def bench_onnxruntime(store, tokens: int, reps: int) -> dict[str, float]:  # noqa: ANN001
    import onnxruntime as ort

    tree, record = _build(store, "cpu")
    session = _session(store, record)
    prompt = session.tokenizer.encode(PROMPT)
    kv_heads, head_dim = _kv_dims(session)
    plain = ort.InferenceSession(str(tree / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in plain.get_inputs()]
    past_names = [n for n in names if n.startswith("past_key_values.")]
    outputs = ["logits"] + [n.replace("past_key_values.", "present.") for n in past_names]
    has_pos = "position_ids" in names

    def plain_loop() -> list[int]:
        past = {n: np.zeros((1, kv_heads, 0, head_dim), np.float32) for n in past_names}
        ids, length, out = np.array([prompt], np.int64), 0, []
        for _ in range(tokens):
            n = ids.shape[1]
            feeds = {"input_ids": ids, "attention_mask": np.ones((1, length + n), np.int64), **past}
            if has_pos:
                feeds["position_ids"] = np.arange(length, length + n, dtype=np.int64)[None]
            res = plain.run(outputs, feeds)
            past = dict(zip(past_names, res[1:], strict=True))
            length += n
            token = int(np.argmax(res[0][0, -1]))
            out.append(token)
            ids = np.array([[token]], np.int64)
        return out

    def session_loop() -> list[int]:
        return list(session.generate_ids(prompt, tokens))

    assert plain_loop() == session_loop(), "rmbuild's ORT session and onnxruntime disagree"
    t_ours, t_plain, ratio = interleaved(session_loop, plain_loop, reps)
    session.close()
    return {
        "tokens": tokens,
        "onnxruntime_tok_s": tokens / t_plain,
        "rmbuild_tok_s": tokens / t_ours,
        "rmbuild_over_direct": ratio,
    }


def bench_openvino(store, tokens: int, reps: int) -> dict[str, float]:  # noqa: ANN001
    import openvino as ov

    tree, record = _build(store, "openvino-cpu")
    session = _session(store, record)
    prompt = session.tokenizer.encode(PROMPT)
    kv_heads, head_dim = _kv_dims(session)

    core = ov.Core()

    def python_load():  # noqa: ANN202
        compiled = core.compile_model(
            core.read_model(str(tree / "openvino_model.xml")),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32"},
        )
        return compiled.create_infer_request(), compiled

    request, compiled = python_load()
    past_names = [p.any_name for p in compiled.inputs if p.any_name.startswith("past_key_values.")]
    present = [n.replace("past_key_values.", "present.") for n in past_names]
    has_pos = any(p.any_name == "position_ids" for p in compiled.inputs)

    def python_loop() -> list[int]:
        past = {n: np.zeros((1, kv_heads, 0, head_dim), np.float32) for n in past_names}
        ids, length, out = np.array([prompt], np.int64), 0, []
        for _ in range(tokens):
            n = ids.shape[1]
            feeds = {"input_ids": ids, "attention_mask": np.ones((1, length + n), np.int64), **past}
            if has_pos:
                feeds["position_ids"] = np.arange(length, length + n, dtype=np.int64)[None]
            res = request.infer(feeds)
            past = {p: res[q] for p, q in zip(past_names, present, strict=True)}
            length += n
            token = int(np.argmax(res["logits"][0, -1]))
            out.append(token)
            ids = np.array([[token]], np.int64)
        return out

    def capi_loop() -> list[int]:
        return list(session.generate_ids(prompt, tokens))

    assert python_loop() == capi_loop(), "C API and Python API disagree"
    t_capi, t_py, ratio = interleaved(capi_loop, python_loop, reps)

    def capi_load() -> None:
        _session(store, record).close()

    load_capi, load_py, _ = interleaved(capi_load, python_load, reps=5)
    session.close()
    return {
        "tokens": tokens,
        "python_api_tok_s": tokens / t_py,
        "capi_tok_s": tokens / t_capi,
        "capi_over_python": ratio,
        "python_api_load_s": load_py,
        "capi_load_s": load_capi,
    }


def bench_iree(store, tokens: int, reps: int) -> dict[str, float]:  # noqa: ANN001
    import iree.runtime as rt

    tree, record = _build(store, "iree-cpu")
    session = _session(store, record)
    prompt = session.tokenizer.encode(PROMPT)
    io = json.loads((tree / "io.json").read_text())
    kv_heads, head_dim = _kv_dims(session)
    driver = session.step_fn.config.driver if hasattr(session.step_fn.config, "driver") else None

    module = rt.load_vm_flatbuffer_file(str(tree / "model.vmfb"), driver=driver or "local-task")
    fn = module.main_graph
    past_names = [n for n in io["inputs"] if n.startswith("past_key_values.")]

    def direct_loop() -> list[int]:
        past = [np.zeros((1, kv_heads, 0, head_dim), np.float32)] * len(past_names)
        ids, length, out = np.array([prompt], np.int64), 0, []
        for _ in range(tokens):
            n = ids.shape[1]
            values = {
                "input_ids": ids,
                "attention_mask": np.ones((1, length + n), np.int64),
                "position_ids": np.arange(length, length + n, dtype=np.int64)[None],
                **dict(zip(past_names, past, strict=True)),
            }
            res = fn(*[values[name] for name in io["inputs"]])
            past = list(res[1:])
            length += n
            token = int(np.argmax(res[0].to_host()[0, -1]))
            out.append(token)
            ids = np.array([[token]], np.int64)
        return out

    def session_loop() -> list[int]:
        return list(session.generate_ids(prompt, tokens))

    assert direct_loop() == session_loop(), "rmbuild's IREE session and iree.runtime disagree"
    t_ours, t_direct, ratio = interleaved(session_loop, direct_loop, reps)
    session.close()
    return {
        "tokens": tokens,
        "driver": driver or "local-task",
        "iree_runtime_tok_s": tokens / t_direct,
        "rmbuild_tok_s": tokens / t_ours,
        "rmbuild_over_direct": ratio,
    }


def bench_parallel(work: Path) -> dict[str, float]:
    from rmbuild.declare.spec import load_model_spec

    targets = list(load_model_spec(SPEC).spec.targets)
    env = {**os.environ, "RMBUILD_CONFIG_DIR": str(work / "config")}

    def timed(store: str, *args: str) -> float:
        t0 = time.perf_counter()
        subprocess.run(
            [RMBUILD, "--store", str(work / store), "compile", str(SPEC), *args],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - t0

    one_by_one = sum(timed(f"alone-{t}", "--target", t) for t in targets)
    sequential = timed("all-j1", "--all")
    parallel = timed("all-j2", "--all", "-j", "2")
    return {
        "targets": len(targets),
        "sum_one_by_one_s": one_by_one,
        "all_j1_s": sequential,
        "all_j2_s": parallel,
        "j2_over_sum": parallel / one_by_one,
        "j2_over_j1": parallel / sequential,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="onnxruntime,openvino,iree,parallel")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    results: dict[str, dict[str, object]] = {}
    from artifact_store import Store

    with tempfile.TemporaryDirectory(prefix="rmbuild-bench-") as tmp:
        work = Path(tmp)
        os.environ["RMBUILD_CONFIG_DIR"] = str(work / "config")
        with Store(work / "store") as store:
            if "onnxruntime" in wanted:
                results["onnxruntime"] = bench_onnxruntime(store, args.tokens, args.reps)
            if "openvino" in wanted:
                results["openvino"] = bench_openvino(store, args.tokens, args.reps)
            if "iree" in wanted:
                results["iree"] = bench_iree(store, args.tokens, args.reps)
        if "parallel" in wanted:
            results["parallel"] = bench_parallel(work)
    for name, values in results.items():
        print(f"[{name}]")
        for key, value in values.items():
            shown = f"{value:10.4f}" if isinstance(value, float) else f"{value!s:>10}"
            print(f"  {key:<28} {shown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
