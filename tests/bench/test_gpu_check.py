"""bench/gpu_check.sh, the first script run on a GPU host, without a GPU: a stand-in
``nvidia-smi`` and a stand-in ``rmbuild`` (whose answers each test sets) on PATH, the stand-in
``tensorrt`` module and trtexec for the TensorRT detection. What is checked is the script's own
logic: what it builds, what fails it, its exit status, its table and its logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"
STANDINS = REPO / "tests" / "fakes" / "standin_tensorrt"
SYSTEM_PATH = "/usr/bin:/bin"
REFERENCE = "The future of AI is bright"

# A stand-in `rmbuild`: `compile` answers an artifact id (and keeps the model.yaml it got),
# `run` answers a text; FAKE_FAIL=<target>:<build|run> makes that step fail, FAKE_TEXT_<target>
# changes that target's text.
FAKE_RMBUILD = """\
import json, os, shutil, sys
args = sys.argv[1:]
log = os.environ["FAKE_LOG"]
fail = os.environ.get("FAKE_FAIL", "")
if args[0] == "compile":
    target = args[args.index("-t") + 1]
    shutil.copy(args[1], os.path.join(log, "model.yaml"))
    if fail == target + ":build":
        sys.exit("error: trtexec failed (exit 1)")
    print(json.dumps([{"artifact": "id-" + target}]))
elif args[0] == "run":
    target = args[args.index("--artifact") + 1][3:]
    if fail == target + ":run":
        sys.exit("error: TensorRT could not deserialize model.plan")
    text = os.environ.get("FAKE_TEXT_" + target.replace("-", "_"), os.environ["FAKE_REFERENCE"])
    print(json.dumps({"text": text, "tokens_per_s": 100.0}))
else:
    print("rmbuild " + " ".join(args))
"""


@pytest.fixture
def host(tmp_path: Path):  # noqa: ANN201 - a callable that runs the script
    if shutil.which("nvidia-smi", path=SYSTEM_PATH):
        pytest.skip("this machine has a real nvidia-smi in /usr/bin")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    rmbuild = bin_dir / "rmbuild"
    rmbuild.write_text(f"#!{sys.executable}\n{FAKE_RMBUILD}")
    rmbuild.chmod(0o755)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 580.65.06, 9.0'\n")
    smi.chmod(0o755)
    log = tmp_path / "fake-log"
    log.mkdir()
    # No IREE unless a test asks: a package that shadows iree and fails to import.
    no_iree = tmp_path / "no-iree" / "iree"
    no_iree.mkdir(parents=True)
    (no_iree / "__init__.py").write_text("raise ImportError('iree hidden by the test')\n")
    profiles = tmp_path / "profiles" / "toolchains"
    profiles.mkdir(parents=True)

    def toolchain(name: str, version: str) -> None:
        from tests.backends.tensorrt.conftest import install_trtexec

        tc_bin = tmp_path / f"tc-{name}" / "bin"
        install_trtexec(tc_bin, version)
        (tc_bin / "python").symlink_to(sys.executable)
        (profiles / f"{name}.yaml").write_text(
            f"name: {name}\npython: {json.dumps(str(tc_bin / 'python'))}\npackages: []\n"
        )

    def run(
        *, gpu: bool = True, trt: str | None = None, iree: bool = False, **env: str
    ) -> subprocess.CompletedProcess:
        if not gpu:
            smi.unlink()
        paths = [] if iree else [str(no_iree.parent)]
        if trt is not None:
            paths.append(str(STANDINS))
        full_env = {
            "PATH": f"{bin_dir}:{SYSTEM_PATH}",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "PYTHONPATH": os.pathsep.join(paths),
            "RMBUILD_PROFILES_PATH": str(tmp_path / "profiles"),
            "RMBUILD_CONFIG_DIR": str(tmp_path / "config"),
            "STANDIN_TENSORRT_VERSION": trt or "",
            "FAKE_LOG": str(log),
            "FAKE_REFERENCE": REFERENCE,
            **env,
        }
        return subprocess.run(  # noqa: S603 - bash and the script, no shell string
            ["bash", str(SCRIPT)], env=full_env, capture_output=True, text=True, check=False
        )

    run.toolchain = toolchain  # type: ignore[attr-defined]
    run.model_yaml = log / "model.yaml"  # type: ignore[attr-defined]
    return run


def _row(out: str, check: str) -> str:
    table = out.split("== summary", 1)[1]
    return next(line for line in table.splitlines() if line.startswith(check + " "))


def test_no_gpu_is_not_a_success(host) -> None:  # noqa: ANN001
    r = host(gpu=False)
    assert r.returncode == 77, r.stdout + r.stderr
    assert "NOT CHECKED: no nvidia-smi here" in r.stderr


def test_nothing_on_the_gpu_to_check_is_not_a_success(host) -> None:  # noqa: ANN001
    r = host()  # a GPU, but neither IREE nor the tensorrt module
    assert r.returncode == 77, r.stdout + r.stderr
    assert "SKIP" in _row(r.stdout, "iree-cuda") and "SKIP" in _row(r.stdout, "tensorrt")
    assert "nothing ran on the GPU" in r.stdout


def test_trt10_builds_a_strict_fp32_plan_and_passes(host) -> None:  # noqa: ANN001
    host.toolchain("tensorrt", "10.13.0.35")
    r = host(trt="10.13.0.35", FAKE_TEXT_trt_fp16="The future of AI is brilliant")
    assert r.returncode == 0, r.stdout + r.stderr
    spec = host.model_yaml.read_text()
    assert "trt-fp32: {profile: tensorrt-fp16, flags: {precision: fp32, tf32: false" in spec
    assert "PASS" in _row(r.stdout, "trt-fp32") and "same text" in _row(r.stdout, "trt-fp32")
    assert "PASS" in _row(r.stdout, "trt-fp16") and "differs" in _row(r.stdout, "trt-fp16")
    assert "gpu_check: PASSED (logs removed" in r.stdout


def test_an_fp16_run_failure_fails_the_check_and_keeps_its_log(host) -> None:  # noqa: ANN001
    host.toolchain("tensorrt", "10.13.0.35")
    r = host(trt="10.13.0.35", FAKE_FAIL="trt-fp16:run")
    assert r.returncode == 1, r.stdout + r.stderr
    row = _row(r.stdout, "trt-fp16")
    assert "FAIL" in row and "failed to run" in row
    log = Path(row.split()[-1])
    assert log.is_file() and "could not deserialize" in log.read_text()  # kept, as pointed to
    assert "logs and store kept in" in r.stdout


def test_an_fp32_text_that_differs_fails(host) -> None:  # noqa: ANN001
    host.toolchain("tensorrt", "10.13.0.35")
    r = host(trt="10.13.0.35", FAKE_TEXT_trt_fp32="The future of AI is dim")
    assert r.returncode == 1
    assert "DIFFERS from the CPU" in _row(r.stdout, "trt-fp32")


def test_a_trt11_host_takes_the_strongly_typed_path(host) -> None:  # noqa: ANN001
    host.toolchain("tensorrt11", "11.4.0.106")
    r = host(trt="11.4.0.106", KEEP="1")
    assert r.returncode == 0, r.stdout + r.stderr
    spec = host.model_yaml.read_text()
    assert "trt-fp32: {profile: tensorrt-strong, depends_on: onnx-export, flags: {tf32: false" in (
        spec
    )
    assert "trt-fp16: {profile: tensorrt-strong," in spec
    assert "logs and store kept in" in r.stdout  # KEEP=1, even on success


def test_a_trt11_runtime_without_its_trtexec_is_named(host) -> None:  # noqa: ANN001
    host.toolchain("tensorrt", "10.13.0.35")  # only the 10.x toolchain
    r = host(trt="11.4.0.106", iree=True)
    assert "toolchain 'tensorrt11' has no trtexec" in r.stdout
    assert "SKIP" in _row(r.stdout, "tensorrt")


def test_the_cpu_reference_failing_stops_the_check(host) -> None:  # noqa: ANN001
    r = host(FAKE_FAIL="cpu:build")
    assert r.returncode == 1
    assert "the CPU reference failed to build" in _row(r.stdout, "cpu")
