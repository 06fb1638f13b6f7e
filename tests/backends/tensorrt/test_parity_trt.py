"""TensorRT vs ONNX Runtime on the example: the same greedy text from an fp32 plan.

Needs a real TensorRT (the tensorrt module, not the stand-in), trtexec in the toolchain of its
major (``tensorrt`` for 10.x, ``tensorrt11`` for 11.x), an NVIDIA GPU and the onnx extra; skips
otherwise (always, on CI). The plan is strict fp32 (``tf32: false``): with TF32, trtexec's
default, an fp32 layer keeps about fp16's mantissa and the text need not match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tiny-llama" / "model"


def _real_tensorrt() -> str:
    """The TensorRT target for this host's major, or a skip saying what is missing."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum")
    trt = pytest.importorskip("tensorrt")
    if getattr(trt, "STANDIN", False):
        pytest.skip("the stand-in tensorrt module is on the path, not TensorRT")
    from rmbuild.backends.tensorrt import probe
    from rmbuild.errors import ToolError
    from rmbuild.toolrun.toolchains import find_toolchain

    if not probe.gpus():
        pytest.skip("no NVIDIA GPU (NVML/nvidia-smi)")
    major = int(str(trt.__version__).split(".")[0])
    toolchain = "tensorrt11" if major >= 11 else "tensorrt"
    try:
        find_toolchain(toolchain).which("trtexec")
    except ToolError as exc:
        pytest.skip(f"no trtexec: {exc.message}")
    if major >= 11:  # strongly typed: fp32 straight from the export, no AutoCast stage
        return (
            "{profile: tensorrt-strong, depends_on: onnx-export, flags: {tf32: false, max_seq: 64}}"
        )
    return "{profile: tensorrt-fp16, flags: {precision: fp32, tf32: false, max_seq: 64}}"


@pytest.mark.slow
def test_trt_fp32_gives_onnxruntimes_greedy_text(cli, tmp_path: Path, store_dir: Path) -> None:  # noqa: ANN001
    trt_target = _real_tensorrt()
    spec = tmp_path / "model.yaml"
    spec.write_text(
        f"name: parity\nsource: {{path: {json.dumps(str(EXAMPLE))}, format: hf}}\ntargets:\n"
        "  cpu: {profile: onnxruntime-cpu}\n"
        f"  trt: {trt_target}\n"
    )
    texts = {}
    for target in ("cpu", "trt"):
        r = cli("compile", str(spec), "-t", target, "--json")
        assert r.code == 0, r.err
        key = json.loads(r.out)[0]["artifact"]
        r = cli("run", "--artifact", key, "-p", "The future of AI is", "-n", "16", "--json")
        assert r.code == 0, r.err
        texts[target] = json.loads(r.out)["text"]
    assert texts["trt"] == texts["cpu"]
