"""Fixtures for the TensorRT backend's contract tests.

A project whose source is an ONNX folder (model.onnx as opaque bytes, kv_layout.json,
config.json and the example's tokenizer), toolchains ``tensorrt``/``tensorrt11`` whose bin dir
holds the stand-in trtexec (tests/fakes/standin_trtexec.py) imitating a given TensorRT version,
a ``modelopt`` toolchain whose Python finds the stand-in AutoCast, and a stand-in GPU (the
NVML/nvidia-smi query monkeypatched). Nothing here needs TensorRT, CUDA or a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parents[2] / "fakes"
STANDINS = FAKES / "standin_tensorrt"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tiny-llama" / "model"

HEADS, HEAD_DIM, LAYERS, VOCAB = 2, 32, 2, 1000

LAYOUT = {
    "format": 1,
    "inputs": [
        {"name": "input_ids", "dtype": "int64", "shape": [None, None], "names": ["input_ids"]},
        {
            "name": "attention_mask",
            "dtype": "int64",
            "shape": [None, None],
            "names": ["attention_mask"],
        },
        {
            "name": "position_ids",
            "dtype": "int64",
            "shape": [None, None],
            "names": ["position_ids"],
        },
        *(
            {
                "name": f"past_key_values.{i}.{kv}",
                "dtype": "float32",
                "shape": [None, HEADS, None, HEAD_DIM],
                "names": [f"past_key_values.{i}.{kv}"],
            }
            for i in range(LAYERS)
            for kv in ("key", "value")
        ),
    ],
    "outputs": [
        "logits",
        *(f"present.{i}.{kv}" for i in range(LAYERS) for kv in ("key", "value")),
    ],
}

# The first bytes of two real TensorRT plans from NVIDIA's own repository
# https://github.com/NVIDIA/trt-samples-for-hackathon-cn (read with `git cat-file -p <blob> |
# head -c 28 | xxd`), the ground truth the header parser, the stand-ins and their tests are
# checked against:
# * cookbook/05-Plugin/BasicExample-V2-deprecated/model-Dim1.plan at commit 3cd77c57e34f
#   (2024-05-26, the cookbook's move to TensorRT 10.0 GA), blob b30e4bdfeb01, 3308 bytes:
#   tag "ftrt", layout word 0, 1, 0, the file's size (0x0cec = 3308) as a uint64, then
#   TensorRT 10.0.1.6. Its three siblings (Dim2-4, 3508/3708/3908 bytes) differ only in that
#   size field.
REAL_PLAN_10_0 = bytes.fromhex("66747274 00000000 01000000 00000000 ec0c0000 00000000 0a000106")
REAL_PLAN_10_0_SIZE = 3308
# * cookbook/old-cookbook/TRT-DynamicShape/02-int8/engine-int8-3-2.trt at commit 481e0e40189f
#   (2022-07-02, TensorRT 8.4 days), blob 0783ed4cace6: a plan from before 8.6, tag "ptrt".
REAL_PLAN_8_4 = bytes.fromhex("70747274 59000000 c2000000 cf110000 00000000 911ed4fb 02000100")


def real_header(version: tuple[int, int, int, int]) -> bytes:
    """The real 10.0 plan's first 28 bytes with another version in bytes 24-27."""
    return REAL_PLAN_10_0[:24] + bytes(version)


GPU_86 = {"name": "NVIDIA A10 (stand-in)", "compute_capability": "8.6", "driver": "550.54.15"}
GPU_89 = {"name": "NVIDIA L4 (stand-in)", "compute_capability": "8.9", "driver": "550.54.15"}
GPU_75 = {"name": "Tesla T4 (stand-in)", "compute_capability": "7.5", "driver": "550.54.15"}


def install_trtexec(bin_dir: Path, version: str, mode: str = "ok") -> Path:
    """The stand-in trtexec as ``bin_dir/trtexec``, imitating TensorRT ``version``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    body = (FAKES / "standin_trtexec.py").read_text(encoding="utf-8").split("\n", 1)[1]
    body = body.replace('IMITATES = "10.13.0.35"', f"IMITATES = {version!r}", 1)
    body = body.replace('MODE = "ok"', f"MODE = {mode!r}", 1)
    path = bin_dir / "trtexec"
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class HostBuffers:
    """A stand-in for rmbuild's DeviceBuffers: host arrays by name, pointers are ids. The
    "device" writes logits whose argmax is :attr:`next_token`, so greedy decoding has a
    known answer."""

    stream = 7

    def __init__(self, next_token: int = 42) -> None:
        import numpy as np

        self.np = np
        self.next_token = next_token
        self.held: dict[str, object] = {}

    def upload(self, name: str, array) -> int:  # noqa: ANN001
        self.held[name] = array
        return id(array)

    def output(self, name: str, shape: tuple[int, ...], dtype) -> int:  # noqa: ANN001
        out = self.np.zeros(shape, dtype=dtype)
        if name == "logits":
            out[..., self.next_token] = 1.0
        self.held[name] = out
        return id(self.held[name])

    def download(self, name: str, shape: tuple[int, ...], dtype):  # noqa: ANN001, ANN201
        return self.held[name]

    def synchronize(self) -> None:
        pass


class TRTProject:
    """A project with TensorRT toolchains of stand-ins; see the module docstring."""

    def __init__(self, project, tmp_path: Path) -> None:  # noqa: ANN001
        self.project = project
        self.root: Path = project.root
        self.spec: Path = project.spec
        self.source = self.root / "onnxmodel"
        self.tmp = tmp_path
        self.source.mkdir()
        (self.source / "model.onnx").write_bytes(b"stand-in ONNX graph v1\n")
        (self.source / "kv_layout.json").write_text(json.dumps(LAYOUT), encoding="utf-8")
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(EXAMPLE / name, self.source / name)
        self.toolchain("tensorrt", "10.13.0.35")
        self.toolchain("tensorrt11", "11.4.0.106")
        (self.root / "profiles" / "toolchains" / "modelopt.yaml").write_text(
            "name: modelopt\npython: null\npackages: [nvidia-modelopt, onnx, onnxruntime]\n"
            f"env: {{PYTHONPATH: {json.dumps(str(STANDINS))}}}\n",
            encoding="utf-8",
        )
        self.write_spec()

    def bin_dir(self, name: str) -> Path:
        return self.tmp / f"tc-{name}" / "bin"

    def toolchain(self, name: str, version: str | None, mode: str = "ok") -> None:
        """Toolchain ``name`` whose trtexec imitates ``version`` (None: no trtexec)."""
        bin_dir = self.bin_dir(name)
        bin_dir.mkdir(parents=True, exist_ok=True)
        python = bin_dir / "python"
        if not python.exists():
            python.symlink_to(sys.executable)
        if version is None:
            (bin_dir / "trtexec").unlink(missing_ok=True)
        else:
            install_trtexec(bin_dir, version, mode)
        (self.root / "profiles" / "toolchains" / f"{name}.yaml").write_text(
            f"name: {name}\npython: {json.dumps(str(python))}\npackages: []\n", encoding="utf-8"
        )

    def write_spec(self, **targets: dict) -> None:
        targets = targets or {
            "fp16": {"profile": "tensorrt-fp16"},
            "strong": {"profile": "tensorrt-strong", "depends_on": "modelopt-autocast"},
        }
        lines = ["name: tiny", "source: {path: onnxmodel, format: onnx}", "targets:"]
        lines += [f"  {name}: {json.dumps(t)}" for name, t in targets.items()]
        self.spec.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def kit():  # noqa: ANN201 - this module: its constants and helpers for the tests
    """This conftest's constants and helpers (the test folder is no package: a package named
    ``tensorrt`` would shadow the real module for every test)."""
    return sys.modules[__name__]


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict | None], None]:
    """Set the stand-in GPU this 'host' has (None: no GPU)."""
    from rmbuild.backends.tensorrt import probe

    def use(found: dict | None) -> None:
        monkeypatch.setattr(probe, "gpus", lambda: [dict(found)] if found else [])

    use(GPU_86)
    return use


@pytest.fixture
def trt(project, tmp_path: Path, gpu) -> TRTProject:  # noqa: ANN001
    return TRTProject(project, tmp_path)


@pytest.fixture
def standin_tensorrt(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], object]]:
    """The stand-in ``tensorrt`` module importable, imitating a version set by the call."""

    def use(version: str = "10.13.0.35") -> object:
        monkeypatch.setenv("STANDIN_TENSORRT_VERSION", version)
        sys.modules.pop("tensorrt", None)
        import tensorrt

        assert getattr(tensorrt, "STANDIN", False), tensorrt
        return tensorrt

    from rmbuild.backends.tensorrt import probe

    monkeypatch.syspath_prepend(str(STANDINS))
    # The stand-in has no distribution metadata: where a real tensorrt wheel is installed, its
    # metadata would otherwise answer for the module the tests import.
    monkeypatch.setattr(probe, "installed_version", lambda: __import__("tensorrt").__version__)
    yield use
    sys.modules.pop("tensorrt", None)
    os.environ.pop("STANDIN_TENSORRT_VERSION", None)
