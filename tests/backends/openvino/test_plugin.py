"""The OpenVINO plugin, its profiles and template, without running the compiler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rmbuild.backends.base import BackendPlugin
from rmbuild.backends.base import version_tuple as _version_tuple
from rmbuild.backends.openvino import probe
from rmbuild.backends.openvino.devices import compile_properties, device_present
from rmbuild.backends.openvino.plugin import OpenVINOBackend
from rmbuild.build import action_key, plan
from rmbuild.declare.profiles import find_profile
from rmbuild.declare.spec import load_model_spec
from rmbuild.plugins import get_backend

PROFILES = ("openvino-cpu", "openvino-gpu", "openvino-npu")
RUNTIME_ONLY = {"device", "inference_precision", "runtime", "num_threads"}


def _spec(tmp_path: Path, flags: str = "") -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text("{}")
    path = tmp_path / "model.yaml"
    path.write_text(
        "name: m\nsource: {path: model, format: hf}\n"
        f"targets:\n  ov:\n    profile: openvino-cpu\n    flags: {{{flags}}}\n"
    )
    return path


def _key(tmp_path: Path, flags: str = "") -> tuple[str, list[str]]:
    spec = load_model_spec(_spec(tmp_path, flags))
    stage = plan(spec, "ov")[-1]
    key = action_key(stage, {"model": "0" * 64}, spec.root)
    return key.compute(), key.argv


def test_registered_through_the_entry_point() -> None:
    plugin = get_backend("openvino")
    assert isinstance(plugin, OpenVINOBackend) and isinstance(plugin, BackendPlugin)
    assert plugin.name == "openvino" and plugin.extra == "openvino"
    assert set(plugin.required_build_profiles()) >= set(PROFILES)


def test_plugin_import_does_not_import_openvino() -> None:
    code = (
        "import sys\n"
        "from rmbuild.plugins import get_backend\n"
        "p = get_backend('openvino')\n"
        "a = p.availability()\n"
        "p.fingerprint(None, {})\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'openvino'], 'imported'\n"
        "print(a.ok)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_load_and_chain_from_the_export(name: str) -> None:
    profile = find_profile(name).profile
    assert profile.backend == "openvino" and profile.stage == "compile"
    assert (profile.input_format, profile.output_format) == ("onnx", "openvino-ir")
    assert profile.depends_on == "onnx-export"
    assert profile.toolchain == "openvino"
    assert profile.tool.name == "ovc" and profile.tool.package == "openvino"
    assert set(profile.runtime_flags) == RUNTIME_ONLY
    assert profile.flags["compress_to_fp16"] is True and profile.flags["input"] is None
    assert profile.flags["device"] == name.split("-")[1].upper()
    assert profile.outputs == ["openvino_model.xml", "openvino_model.bin"]
    assert "tokenizer.json" in profile.carry
    assert profile.resource == name.split("-")[1]


def test_cpu_profile_pins_f32_inference() -> None:
    assert find_profile("openvino-cpu").profile.flags["inference_precision"] == "f32"


def test_argv_renders_the_real_ovc_flags(tmp_path: Path) -> None:
    _, argv = _key(tmp_path)
    assert argv == [
        "<tool:ovc>",
        "<input:model>/model.onnx",
        "--output_model",
        "<output>/openvino_model.xml",
        "--compress_to_fp16=True",
    ]
    _, argv = _key(tmp_path, 'compress_to_fp16: false, input: "input_ids[1,?]{i64}"')
    assert argv[-3:] == ["--compress_to_fp16=False", "--input", "input_ids[1,?]{i64}"]
    _, argv = _key(tmp_path, 'compress_to_fp16: "False"')
    assert argv[-1] == "--compress_to_fp16=False"


def test_keyed_flags_change_the_key(tmp_path: Path) -> None:
    base, _ = _key(tmp_path)
    assert _key(tmp_path, "compress_to_fp16: false")[0] != base
    assert _key(tmp_path, 'input: "input_ids[1,?]"')[0] != base


@pytest.mark.parametrize(
    "flags", ["device: GPU", "inference_precision: f16", "runtime: python", "num_threads: 2"]
)
def test_runtime_flags_do_not_change_the_key(tmp_path: Path, flags: str) -> None:
    assert _key(tmp_path, flags)[0] == _key(tmp_path)[0]


def test_fingerprint_adds_nothing_beyond_toolchain_and_flags() -> None:
    profile = find_profile("openvino-cpu").profile
    assert OpenVINOBackend().fingerprint(profile, dict(profile.flags)) == {}


def test_toolchain_keys_the_openvino_version() -> None:
    from rmbuild.toolrun.toolchains import find_toolchain

    toolchain = find_toolchain("openvino")
    assert toolchain.python is None and toolchain.extra == "openvino"
    assert toolchain.packages == ["openvino"]


def test_availability_without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "installed_version", lambda: None)
    avail = OpenVINOBackend().availability()
    assert not avail.ok
    assert avail.install == "pip install 'rmbuild[openvino]'"
    assert OpenVINOBackend().probe() == []


def test_availability_without_the_c_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setenv("RMBUILD_OPENVINO_C_LIB", str(tmp_path / "missing.so"))
    avail = OpenVINOBackend().availability()
    assert not avail.ok and "missing.so" in avail.reason
    assert avail.install == "pip install 'rmbuild[openvino]'"


def test_availability_and_probe_here() -> None:
    pytest.importorskip("openvino")
    avail = OpenVINOBackend().availability()
    assert avail.ok, avail.reason
    assert avail.versions["libopenvino_c"].startswith("libopenvino_c")
    resources = OpenVINOBackend().probe()
    assert any(r.type == "cpu" and r.attributes["openvino_device"] == "CPU" for r in resources)


@pytest.mark.parametrize(
    ("device", "present"),
    [
        ("CPU", True),
        ("cpu", True),
        ("GPU", True),
        ("GPU.1", True),
        ("GPU.2", False),
        ("NPU", False),
        ("AUTO", True),
        ("AUTO:GPU,CPU", True),
        ("HETERO:NPU,CPU", False),
        ("MULTI:", False),
        ("BOGUS", False),
    ],
)
def test_device_present(device: str, present: bool) -> None:
    assert device_present(device, ["CPU", "GPU.0", "GPU.1"]) is present


def test_compile_properties() -> None:
    assert compile_properties({"inference_precision": "f32", "num_threads": 2}) == {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": "2",
        "PERFORMANCE_HINT": "LATENCY",
    }
    assert compile_properties({"inference_precision": None, "num_threads": 0}) == {
        "PERFORMANCE_HINT": "LATENCY"
    }


def test_version_tuple_reads_package_and_library_versions() -> None:
    assert _version_tuple("2026.4.1") == (2026, 4, 1)
    assert _version_tuple("2026.4.1-22982-0bd1b4d2a8c") == (2026, 4, 1)
    assert _version_tuple("2025.0.0.dev20250101") == (2025, 0, 0)


def test_unknown_runtime_is_refused() -> None:
    from rmbuild.errors import IncompatibleArtifact

    with pytest.raises(IncompatibleArtifact, match="genai"):
        OpenVINOBackend().check_compatible({"runtime_flags": {"runtime": "genai"}})
