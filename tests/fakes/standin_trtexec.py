#!/usr/bin/env python3
"""A STAND-IN for NVIDIA's ``trtexec``, for rmbuild's tests only. Never used outside tests: it
builds nothing a GPU could run.

It keeps trtexec's contract as documented for the TensorRT version it imitates (``trtexec
--help`` of 10.x, NVIDIA's trtexec reference and 10.x -> 11.x migration guide):

* the banner ``&&&& RUNNING TensorRT.trtexec [TensorRT v101300] [b35] # trtexec ...`` first,
  ``&&&& PASSED``/``&&&& FAILED`` last, exit 0/1;
* only options trtexec has are accepted (``--name=value`` form); an unknown one fails, and
  the 11.x stand-in rejects ``--fp16/--bf16/--int8/--fp8/--best/--calib`` (removed in 11);
* with any of ``--minShapes/--optShapes/--maxShapes``, all three must cover every dynamic
  input of the graph, with the input's rank, static dims as declared and min <= opt <= max;
* ``--saveEngine`` gets a plan whose first 28 bytes are laid out as those of a real TensorRT
  10.0 plan (NVIDIA's ``model-Dim1.plan``, see tests/backends/tensorrt/test_planfile.py): the
  uint32 LE tag ``0x74727466``, 0, 1, 0, the file's size as a uint64, then the version bytes
  (major, minor, patch, build); then a JSON payload the stand-in ``tensorrt`` module
  (tests/fakes/standin_tensorrt) reads back;
* ``--noTF32`` (kept in 11.x: TF32 is a math mode, not a precision flag) is recorded in the
  payload, so a test sees whether a strict fp32 build asked for it;
* ``--timingCacheFile`` is read when it exists and written back with this build's "tactics"
  added (one per graph and precision), so an unchanged build adds nothing.

The graph's inputs come from the ONNX file when the ``onnx`` package reads it, else from the
``kv_layout.json`` beside it (a stand-in's shortcut: the light test venv has no onnx).

The tests copy it into a toolchain's bin dir as ``trtexec``, with ``IMITATES`` (the version) and
``MODE`` (``ok`` or ``driver-error``) set in the copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys

# The tests rewrite these two lines in the copy they install (tests/backends/tensorrt/conftest.py).
IMITATES = "10.13.0.35"
MODE = "ok"  # or "driver-error"

MAGIC = 0x74727466
REMOVED_IN_11 = ("--fp16", "--bf16", "--int8", "--fp8", "--best", "--calib")
VALUED = (
    "--onnx",
    "--saveEngine",
    "--loadEngine",
    "--minShapes",
    "--optShapes",
    "--maxShapes",
    "--shapes",
    "--memPoolSize",
    "--builderOptimizationLevel",
    "--hardwareCompatibilityLevel",
    "--timingCacheFile",
    "--device",
    "--calib",
    "--tacticSources",
    "--profilingVerbosity",
)
SWITCHES = (
    "--help",
    "--skipInference",
    "--versionCompatible",
    "--stronglyTyped",
    "--verbose",
    "--getPlanVersionOnly",
    "--noTF32",
    "--fp16",
    "--bf16",
    "--int8",
    "--fp8",
    "--best",
)
HW_LEVELS = ("none", "ampere+", "sameComputeCapability")
DTYPES = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16", "int64": "INT64"}


def version_parts() -> tuple[int, int, int, int]:
    parts = [int(p) for p in IMITATES.split(".")] + [0, 0, 0, 0]
    return parts[0], parts[1], parts[2], parts[3]


def banner(argv: list[str]) -> str:
    major, minor, patch, build = version_parts()
    number = major * 10000 + minor * 100 + patch
    return f"[TensorRT v{number}] [b{build}] # trtexec {' '.join(argv)}"


def fail(argv: list[str], message: str) -> int:
    print(f"[E] {message}", flush=True)
    print(f"&&&& FAILED TensorRT.trtexec {banner(argv)}", flush=True)
    return 1


def parse(argv: list[str]) -> tuple[dict[str, str], str | None]:
    options: dict[str, str] = {}
    for arg in argv:
        name, eq, value = arg.partition("=")
        major = version_parts()[0]
        if major >= 11 and name in REMOVED_IN_11:
            return options, f"Unknown option: {name} (removed in TensorRT 11: strongly typed)"
        if name in VALUED and eq:
            options[name] = value
        elif name in SWITCHES and not eq:
            options[name] = ""
        else:
            return options, f"Unknown option: {arg}"
    return options, None


def graph_inputs(onnx_path: str) -> list[dict]:
    """[{name, dtype, shape (None = dynamic)}] of the graph, and its output names."""
    try:
        import onnx

        graph = onnx.load(onnx_path, load_external_data=False).graph
        types = {1: "float32", 10: "float16", 16: "bfloat16", 7: "int64"}
        inits = {i.name for i in graph.initializer}
        return [
            {
                "name": v.name,
                "dtype": types.get(v.type.tensor_type.elem_type, "float32"),
                "shape": [
                    d.dim_value if d.HasField("dim_value") else None
                    for d in v.type.tensor_type.shape.dim
                ],
            }
            for v in graph.input
            if v.name not in inits
        ]
    except Exception:  # noqa: BLE001 - no onnx, or not a real graph: the sidecar
        pass
    sidecar = os.path.join(os.path.dirname(onnx_path), "kv_layout.json")
    with open(sidecar, encoding="utf-8") as f:
        return json.load(f)["inputs"]


def shapes(spec: str) -> dict[str, list[int]]:
    out = {}
    for item in filter(None, spec.split(",")):
        name, _, dims = item.rpartition(":")
        out[name.strip("'")] = [int(d) for d in dims.split("x")]
    return out


def check_profile(options: dict[str, str], inputs: list[dict]) -> tuple[dict, str | None]:
    given = [k for k in ("--minShapes", "--optShapes", "--maxShapes") if k in options]
    dynamic = [i for i in inputs if any(d is None for d in i["shape"])]
    if not given:
        if dynamic:
            # trtexec overrides unset dynamic dims to 1: an engine of one shape (a warning).
            print(
                f"[W] Dynamic dimensions required for input: {dynamic[0]['name']}, but no "
                "shapes were provided. Automatically overriding shape to: 1x1",
                flush=True,
            )
        return {}, None
    if len(given) != 3:
        return {}, "--minShapes, --optShapes and --maxShapes must be given together"
    mins, opts, maxs = (shapes(options[k]) for k in ("--minShapes", "--optShapes", "--maxShapes"))
    known = {i["name"] for i in inputs}
    for table in (mins, opts, maxs):
        for name in table:
            if name not in known:
                return {}, f'Cannot find input tensor with name "{name}" in the network inputs'
    profile = {}
    for inp in dynamic:
        name = inp["name"]
        if name not in mins or name not in opts or name not in maxs:
            return {}, (
                f"Dynamic dimensions required for input: {name}, but no shapes were provided "
                "for it in every one of --minShapes/--optShapes/--maxShapes"
            )
        lo, mid, hi = mins[name], opts[name], maxs[name]
        rank = len(inp["shape"])
        if not (len(lo) == len(mid) == len(hi) == rank):
            return {}, f"Input {name} has {rank} dims; the shapes given have another rank"
        for axis, declared in enumerate(inp["shape"]):
            if declared is not None and not lo[axis] == mid[axis] == hi[axis] == declared:
                return {}, f"Input {name} dim {axis} is static ({declared}); shapes differ"
            if not lo[axis] <= mid[axis] <= hi[axis]:
                return {}, f"Input {name}: min <= opt <= max violated on dim {axis}"
        profile[name] = {"min": lo, "opt": mid, "max": hi}
    return profile, None


def main(argv: list[str]) -> int:
    print(f"&&&& RUNNING TensorRT.trtexec {banner(argv)}", flush=True)
    options, error = parse(argv)
    if error:
        return fail(argv, error)
    if "--help" in options:
        print("=== Model Options ===\n  --onnx=<file>  ONNX model\n=== Build Options ===")
        print(f"&&&& PASSED TensorRT.trtexec {banner(argv)}", flush=True)
        return 0
    if MODE == "driver-error":
        return fail(
            argv,
            "CUDA initialization failure with error: 35. Please check your CUDA installation: "
            "http://docs.nvidia.com/cuda/cuda-installation-guide-linux/index.html",
        )
    if "--onnx" not in options or "--saveEngine" not in options:
        return fail(argv, "Model missing or format not recognized")
    hw = options.get("--hardwareCompatibilityLevel", "none")
    if hw not in HW_LEVELS:
        return fail(argv, f"Invalid hardwareCompatibilityLevel: {hw}")
    level = int(options.get("--builderOptimizationLevel", "3"))
    if not 0 <= level <= 5:
        return fail(argv, f"Invalid builderOptimizationLevel: {level}")
    onnx_path = options["--onnx"]
    try:
        with open(onnx_path, "rb") as f:
            graph_bytes = f.read()
        inputs = graph_inputs(onnx_path)
    except OSError as exc:
        return fail(argv, f"Failed to parse onnx file {onnx_path}: {exc}")
    profile, error = check_profile(options, inputs)
    if error:
        return fail(argv, error)
    config_path = os.path.join(os.path.dirname(onnx_path), "config.json")
    vocab = 32
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            vocab = int(json.load(f).get("vocab_size", vocab))
    precision = next((p[2:] for p in REMOVED_IN_11[:5] if p in options), "fp32")
    payload = {
        "standin": True,
        "inputs": [
            {**i, "trt_dtype": DTYPES.get(i["dtype"], "FLOAT"), "profile": profile.get(i["name"])}
            for i in inputs
        ],
        "vocab_size": vocab,
        "precision": precision,
        "hardware_compatibility": hw,
        "version_compatible": "--versionCompatible" in options,
        "tf32": "--noTF32" not in options,
    }
    body = json.dumps(payload, sort_keys=True).encode()
    # The words at 4, 8 and 12 as NVIDIA's 10.0 plans have them; 16: the whole file's size.
    header = struct.pack("<IIIIQ", MAGIC, 0, 1, 0, 28 + len(body)) + bytes(version_parts())
    with open(options["--saveEngine"], "wb") as f:
        f.write(header + body)
    if cache := options.get("--timingCacheFile"):
        tactics: list[str] = []
        if os.path.isfile(cache):
            with open(cache, encoding="utf-8") as f:
                tactics = json.load(f)["tactics"]
            print(f"[I] Loaded {len(tactics)} tactics from timing cache {cache}", flush=True)
        tactic = hashlib.sha256(graph_bytes + precision.encode()).hexdigest()[:16]
        if tactic not in tactics:
            tactics = sorted([*tactics, tactic])
        with open(cache, "w", encoding="utf-8") as f:
            json.dump({"tensorrt": IMITATES, "tactics": tactics}, f)
    print(f"[I] Engine built; saved to {options['--saveEngine']}", flush=True)
    print(f"&&&& PASSED TensorRT.trtexec {banner(argv)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
