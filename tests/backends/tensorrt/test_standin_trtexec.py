"""The stand-in trtexec keeps trtexec's contract (so the contract tests mean something)."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from rmbuild.backends.tensorrt import planfile

SHAPES = "input_ids:{b}x{s},attention_mask:{b}x{s},position_ids:{b}x{s}," + ",".join(
    f"past_key_values.{i}.{kv}:{{b}}x2x{{p}}x32" for i in range(2) for kv in ("key", "value")
)


def _run(kit, tmp_path: Path, version: str, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    exe = kit.install_trtexec(tmp_path / f"bin-{version}", version)
    graph = tmp_path / "g"
    graph.mkdir(exist_ok=True)
    (graph / "model.onnx").write_bytes(b"graph")
    (graph / "kv_layout.json").write_text(json.dumps(kit.LAYOUT))
    base = [f"--onnx={graph}/model.onnx", f"--saveEngine={tmp_path}/model.plan"]
    return subprocess.run(  # noqa: S603 - the stand-in, no shell
        [str(exe), *base, *args], capture_output=True, text=True, check=False
    )


def _profile(mn: tuple[int, int, int], opt: tuple[int, int, int], mx: tuple[int, int, int]):  # noqa: ANN202
    return [
        f"--minShapes={SHAPES.format(b=mn[0], s=mn[1], p=mn[2])}",
        f"--optShapes={SHAPES.format(b=opt[0], s=opt[1], p=opt[2])}",
        f"--maxShapes={SHAPES.format(b=mx[0], s=mx[1], p=mx[2])}",
    ]


def test_a_good_build_writes_a_plan_with_a_real_header(kit, tmp_path: Path) -> None:
    r = _run(kit, tmp_path, "10.13.0.35", "--fp16", *_profile((1, 1, 0), (1, 1, 4), (1, 8, 7)))
    assert r.returncode == 0, r.stdout
    assert "[TensorRT v101300]" in r.stdout.splitlines()[0]
    assert planfile.read_header(tmp_path / "model.plan").full_version == "10.13.0.35"


def test_the_stand_in_plan_header_is_laid_out_as_a_real_plan(kit, tmp_path: Path) -> None:  # noqa: ANN001
    r = _run(kit, tmp_path, "10.13.0.35", *_profile((1, 1, 0), (1, 1, 4), (1, 8, 7)))
    assert r.returncode == 0, r.stdout
    data = (tmp_path / "model.plan").read_bytes()
    # Tag and the words at 4, 8 and 12 as in NVIDIA's 10.0 plan; then the file's size, as in
    # all four of NVIDIA's plans of that folder; then the version.
    assert data[:16] == kit.REAL_PLAN_10_0[:16]
    assert struct.unpack_from("<Q", kit.REAL_PLAN_10_0, 16)[0] == kit.REAL_PLAN_10_0_SIZE
    assert struct.unpack_from("<Q", data, 16)[0] == len(data)
    assert data[24:28] == bytes((10, 13, 0, 35))


def test_no_tf32_is_accepted_by_10_and_11_and_recorded(kit, tmp_path: Path) -> None:  # noqa: ANN001
    for version in ("10.13.0.35", "11.4.0.106"):
        r = _run(kit, tmp_path, version, "--noTF32")
        assert r.returncode == 0, r.stdout
        assert json.loads((tmp_path / "model.plan").read_bytes()[28:])["tf32"] is False


@pytest.mark.parametrize("flag", ["--fp16", "--bf16", "--int8", "--best"])
def test_trt11_rejects_the_removed_precision_flags(kit, tmp_path: Path, flag: str) -> None:
    r = _run(kit, tmp_path, "11.4.0.106", flag)
    assert r.returncode == 1 and "removed in TensorRT 11" in r.stdout
    assert "&&&& FAILED" in r.stdout


def test_unknown_flags_fail(kit, tmp_path: Path) -> None:
    r = _run(kit, tmp_path, "10.13.0.35", "--workspace=4096")  # removed in 10.0
    assert r.returncode == 1 and "Unknown option: --workspace=4096" in r.stdout


def test_shapes_must_cover_every_dynamic_input(kit, tmp_path: Path) -> None:
    short = [a.replace(",position_ids:1x1", "") for a in _profile((1, 1, 0), (1, 1, 4), (1, 8, 7))]
    r = _run(kit, tmp_path, "10.13.0.35", *short)
    assert r.returncode == 1 and "position_ids" in r.stdout


def test_min_opt_max_must_be_ordered(kit, tmp_path: Path) -> None:
    r = _run(kit, tmp_path, "10.13.0.35", *_profile((1, 1, 0), (1, 9, 4), (1, 8, 7)))
    assert r.returncode == 1 and "min <= opt <= max" in r.stdout
