"""TensorRT vs ONNX Runtime on the example: the same greedy text from an fp32 plan.

Needs a real TensorRT (the tensorrt module, not the stand-in), trtexec in toolchain
``tensorrt``, an NVIDIA GPU and the onnx extra; skips otherwise (always, on CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tiny-llama" / "model"


def _real_tensorrt() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum")
    trt = pytest.importorskip("tensorrt")
    if getattr(trt, "STANDIN", False):
        pytest.skip("the stand-in tensorrt module is on the path, not TensorRT")
    from rmbuild.backends.tensorrt import probe
    from rmbuild.errors import ToolError
    from rmbuild.toolchains import find_toolchain

    if not probe.gpus():
        pytest.skip("no NVIDIA GPU (NVML/nvidia-smi)")
    try:
        find_toolchain("tensorrt").which("trtexec")
    except ToolError as exc:
        pytest.skip(f"no trtexec: {exc.message}")


@pytest.mark.slow
def test_trt_fp32_gives_onnxruntimes_greedy_text(cli, tmp_path: Path, store_dir: Path) -> None:  # noqa: ANN001
    _real_tensorrt()
    spec = tmp_path / "model.yaml"
    spec.write_text(
        f"name: parity\nsource: {{path: {json.dumps(str(EXAMPLE))}, format: hf}}\ntargets:\n"
        "  cpu: {profile: onnxruntime-cpu}\n"
        "  trt: {profile: tensorrt-fp16, flags: {precision: fp32, max_seq: 64}}\n"
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
