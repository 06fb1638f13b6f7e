"""Contract tests of the TensorRT backend through the CLI, against the stand-in trtexec and
stand-in tensorrt module: compile, key, store, timing cache, refusals, load path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact_store import Store

AMPERE_PLUS = {"profile": "tensorrt-fp16", "flags": {"hardware_compatibility": "ampere+"}}


def _compile(cli, trt, target: str):  # noqa: ANN001, ANN202
    return cli("compile", str(trt.spec), "-t", target, "--json")


def _built(cli, trt, target: str) -> dict:  # noqa: ANN001
    r = _compile(cli, trt, target)
    assert r.code == 0, (r.out, r.err)
    return json.loads(r.out)[0]


def _record(trt, key: str):  # noqa: ANN001, ANN202
    with Store(trt.project.store) as store:
        return store.get(key)


def _rows(cli) -> list[dict]:  # noqa: ANN001
    return json.loads(cli("ls", "--all", "--json").out)  # --all: compiler caches too


def test_fp16_plan_compiles_with_derived_shapes_and_keys_trt_and_cc(cli, trt) -> None:  # noqa: ANN001
    built = _built(cli, trt, "fp16")
    meta = _record(trt, built["artifact"]).metadata
    argv = meta["argv"]
    assert "--fp16" in argv and "--skipInference" in argv
    assert "--memPoolSize=workspace:4096M" in argv and "--builderOptimizationLevel=3" in argv
    shapes = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if "Shapes=" in a}
    assert set(shapes) == {"--minShapes", "--optShapes", "--maxShapes"}
    # Every dynamic input, the KV-cache ones included, in every one of the three.
    for spec in shapes.values():
        names = {item.rsplit(":", 1)[0] for item in spec.split(",")}
        kv = {f"past_key_values.{i}.{kv}" for i in range(2) for kv in ("key", "value")}
        assert names == {"input_ids", "attention_mask", "position_ids", *kv}
    assert "past_key_values.0.key:1x2x0x32" in shapes["--minShapes"]
    assert "past_key_values.0.key:1x2x255x32" in shapes["--maxShapes"]
    assert "input_ids:1x256" in shapes["--maxShapes"]
    assert any(a.startswith("--timingCacheFile=") and "compiler-cache" in a for a in argv)
    fp = meta["fingerprint"]
    assert fp["tensorrt"] == "10.13.0" and fp["compute_capability"] == "8.6"
    assert fp["hardware_compatibility"] == "none" and fp["version_compatible"] is False
    # show: the TensorRT version read from the plan's own header, the build GPU, the cache.
    shown = json.loads(cli("show", built["artifact"], "--json").out)
    assert shown["details"]["tensorrt"] == "10.13.0"
    assert "0x74727466" in shown["details"]["header"]
    assert shown["details"]["build_gpus"][0]["compute_capability"] == "8.6"
    assert shown["details"]["timing_cache"]["bytes"] > 0


def test_the_key_holds_trt_version_and_compute_capability(kit, cli, trt, gpu) -> None:  # noqa: ANN001
    first = _built(cli, trt, "fp16")["artifact"]
    assert _built(cli, trt, "fp16")["artifact"] == first  # a hit
    gpu(kit.GPU_89)
    other_gpu = _built(cli, trt, "fp16")["artifact"]
    assert other_gpu != first
    gpu(kit.GPU_86)
    trt.toolchain("tensorrt", "10.14.1.48")
    assert _built(cli, trt, "fp16")["artifact"] not in (first, other_gpu)


def test_ampere_plus_widens_the_key_to_a_gpu_family(kit, cli, trt, gpu) -> None:  # noqa: ANN001
    trt.write_spec(fp16=AMPERE_PLUS)
    first = _built(cli, trt, "fp16")["artifact"]
    meta = _record(trt, first).metadata
    assert "--hardwareCompatibilityLevel=ampere+" in meta["argv"]
    assert meta["fingerprint"]["compute_capability_min"] == "8.0"
    gpu(kit.GPU_89)
    assert _built(cli, trt, "fp16")["artifact"] == first  # one plan for Ampere and newer
    gpu(kit.GPU_75)
    r = _compile(cli, trt, "fp16")
    r.assert_failure(3)
    assert "ampere+ needs an Ampere or newer GPU" in r.err and "7.5" in r.err


def test_timing_cache_is_an_artifact_fed_to_each_build_and_versioned(cli, trt) -> None:  # noqa: ANN001
    first = _built(cli, trt, "fp16")["artifact"]
    caches = [r for r in _rows(cli) if r.get("target") == "compiler-cache"]
    assert len(caches) == 1
    # Another graph: fed the first build's cache, it adds a tactic -> a new cache artifact,
    # and the one it was fed stays (its own key).
    (trt.source / "model.onnx").write_bytes(b"stand-in ONNX graph v2\n")
    second = _built(cli, trt, "fp16")["artifact"]
    meta = _record(trt, second).metadata
    assert meta["compiler_cache"]["fed"]["fed"] == 1
    assert meta["compiler_cache"]["stored"]["previous"]
    caches = [r for r in _rows(cli) if r.get("target") == "compiler-cache"]
    assert len(caches) == 2
    with Store(trt.project.store) as store:
        old = store.materialize(meta["compiler_cache"]["stored"]["previous"])
        latest = store.materialize(meta["compiler_cache"]["stored"]["key"])
        assert len(json.loads((old / "timing.cache").read_text())["tactics"]) == 1
        assert len(json.loads((latest / "timing.cache").read_text())["tactics"]) == 2
    # A rebuild that adds nothing makes no new version.
    assert cli("compile", str(trt.spec), "-t", "fp16", "--rebuild").code == 0
    assert len([r for r in _rows(cli) if r.get("target") == "compiler-cache"]) == 2
    assert first != second


def test_trt11_toolchain_refuses_fp16_flags_before_any_tool(cli, trt) -> None:  # noqa: ANN001
    trt.toolchain("tensorrt", "11.4.0.106")
    r = _compile(cli, trt, "fp16")
    r.assert_failure(3)
    assert "TensorRT 11.4.0" in r.err and "removed --fp16" in r.err
    assert "strongly typed" in r.err and "tensorrt-strong" in r.err
    assert _rows(cli) == []  # nothing ran, nothing stored


def test_strong_profile_refuses_a_precision_flag(cli, trt) -> None:  # noqa: ANN001
    trt.write_spec(
        strong={
            "profile": "tensorrt-strong",
            "depends_on": "modelopt-autocast",
            "flags": {"precision": "fp16"},
        }
    )
    r = _compile(cli, trt, "strong")
    r.assert_failure(3)
    assert "strongly typed" in r.err and "modelopt-autocast" in r.err
    assert _rows(cli) == []


def test_strong_chain_casts_with_autocast_then_builds_without_precision_flags(cli, trt) -> None:  # noqa: ANN001
    built = _built(cli, trt, "strong")
    assert [s["profile"] for s in built["stages"]] == ["modelopt-autocast", "tensorrt-strong"]
    meta = _record(trt, built["artifact"]).metadata
    assert not {"--fp16", "--bf16", "--int8", "--stronglyTyped"} & set(meta["argv"])
    assert meta["fingerprint"]["tensorrt"] == "11.4.0"
    cast = _record(trt, built["stages"][0]["key"]).metadata
    assert "--low_precision_type=fp16" in cast["argv"] and "--keep_io_types" in cast["argv"]


def test_trtexec_missing_halfway_keeps_the_earlier_stage(cli, trt) -> None:  # noqa: ANN001
    trt.toolchain("tensorrt11", None)
    r = _compile(cli, trt, "strong")
    r.assert_failure(4)
    assert "'trtexec' is not installed in toolchain 'tensorrt11'" in r.err
    stored = [row["profile"] for row in _rows(cli)]
    assert stored == ["modelopt-autocast"]
    trt.toolchain("tensorrt11", "11.4.0.106")
    built = _built(cli, trt, "strong")
    assert [s["hit"] for s in built["stages"]] == [True, False]


def test_a_driver_error_is_shown_verbatim_with_its_log(cli, trt) -> None:  # noqa: ANN001
    trt.toolchain("tensorrt", "10.13.0.35", mode="driver-error")
    r = cli("compile", str(trt.spec), "-t", "fp16")
    r.assert_failure(4)
    assert "CUDA initialization failure with error: 35. Please check your CUDA installation" in (
        r.err
    )
    assert "&&&& FAILED TensorRT.trtexec" in r.err and "full log:" in r.err
    log = Path(r.err.split("full log:", 1)[1].split()[0])
    assert "CUDA initialization failure" in log.read_text()


def test_run_refuses_a_plan_of_another_trt_version(cli, trt, standin_tensorrt) -> None:  # noqa: ANN001
    key = _built(cli, trt, "fp16")["artifact"]
    tensorrt = standin_tensorrt("10.14.1.48")
    r = cli("run", "--artifact", key, "-n", "1")
    r.assert_failure(6)
    assert "TensorRT 10.13.0" in r.err and "TensorRT 10.14.1.48" in r.err
    assert "--rebuild" in r.err and "--target fp16" in r.err
    assert not [c for c in tensorrt.CALLS if c[0] == "deserialize_cuda_engine"]


def test_run_refuses_another_compute_capability_unless_ampere_plus(
    kit, cli, trt, gpu, standin_tensorrt
) -> None:  # noqa: ANN001
    from rmbuild.errors import IncompatibleArtifact
    from rmbuild.loading import prepare

    standin_tensorrt("10.13.0.35")
    key = _built(cli, trt, "fp16")["artifact"]
    gpu(kit.GPU_89)
    r = cli("run", "--artifact", key, "-n", "1")
    r.assert_failure(6)
    assert "compute capability 8.6" in r.err and "compute capability 8.9" in r.err
    assert "--rebuild" in r.err
    gpu(kit.GPU_86)
    trt.write_spec(fp16=AMPERE_PLUS)
    wide = _built(cli, trt, "fp16")["artifact"]
    gpu(kit.GPU_89)
    with Store(trt.project.store) as store:
        record, _tree, _plugin = prepare(wide, store=store)  # accepted: Ampere or newer
        assert record.key == wide
        gpu(kit.GPU_75)
        try:
            prepare(wide, store=store)
        except IncompatibleArtifact as exc:
            assert "ampere+" in exc.message and "7.5" in exc.message
        else:  # pragma: no cover
            raise AssertionError("a Turing GPU took an ampere+ plan")


def test_backends_says_why_tensorrt_is_unavailable_here(cli) -> None:  # noqa: ANN001
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("the tensorrt module is installed here: the backend is not unavailable")
    r = cli("backends", "--json")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in json.loads(r.out)}
    row = rows["tensorrt"]
    assert row["available"] is False
    assert "tensorrt Python package is not installed" in row["reason"]
    assert "trtexec is not in the wheels" in row["reason"]
    assert "rmbuild[tensorrt]" in json.dumps(row)


VERSION_COMPATIBLE = {"profile": "tensorrt-fp16", "flags": {"version_compatible": True}}


@pytest.mark.parametrize(
    ("built", "here", "loads"),
    [
        ("10.13.0", "10.13.0", True),
        ("10.13.0", "10.14.1", True),  # a later 10.x
        ("10.13.0", "11.4.0", True),  # 10 -> 11: the one documented cross-major pair for 11
        ("10.13.0", "10.12.0", False),  # never an earlier runtime
        ("11.0.0", "11.1.0", True),
        ("11.4.0", "10.16.1", False),
        ("10.13.0", "12.0.0", False),  # no other cross-major pair
        ("8.6.1", "10.13.0", True),
        ("8.5.3", "8.6.1", False),  # version compatibility starts with 8.6 plans
    ],
)
def test_version_compatible_plans_follow_nvidias_rules(built: str, here: str, loads: bool) -> None:
    from rmbuild.backends.tensorrt.plugin import check_version, version_compatible_loads
    from rmbuild.errors import IncompatibleArtifact

    assert version_compatible_loads(built, here) is loads
    if loads:
        check_version(built, here, True, {}, "plan header")
    else:
        with pytest.raises(IncompatibleArtifact, match=f"TensorRT {built}.*TensorRT {here}"):
            check_version(built, here, True, {}, "plan header")
    if built != here:  # without the flag, only the exact release
        with pytest.raises(IncompatibleArtifact):
            check_version(built, here, False, {}, "plan header")


@pytest.mark.parametrize("runtime", ["10.13.0.35", "10.14.1.48", "11.4.0.106"])
def test_a_version_compatible_plan_loads_on_a_later_tensorrt(
    kit, cli, trt, standin_tensorrt, runtime: str
) -> None:  # noqa: ANN001
    pytest.importorskip("numpy")
    pytest.importorskip("tokenizers")
    from rmbuild.loading import load

    trt.write_spec(fp16=VERSION_COMPATIBLE)
    built = _built(cli, trt, "fp16")["artifact"]
    assert "--versionCompatible" in _record(trt, built).metadata["argv"]
    tensorrt = standin_tensorrt(runtime)
    with Store(trt.project.store) as store:
        session = load(built, store=store, buffers=kit.HostBuffers(next_token=7))
        try:
            assert session.generate("hello", max_tokens=1) == session.tokenizer.decode([7])
        finally:
            session.close()
    # The plan embeds the lean runtime: it loaded because rmbuild allowed its host code.
    assert ("engine_host_code_allowed", True) in tensorrt.CALLS


@pytest.mark.parametrize("runtime", ["10.12.0.9", "12.0.0.1"])
def test_a_version_compatible_plan_is_refused_where_nvidia_says_it_cannot_load(
    cli, trt, standin_tensorrt, runtime: str
) -> None:  # noqa: ANN001
    trt.write_spec(fp16=VERSION_COMPATIBLE)
    built = _built(cli, trt, "fp16")["artifact"]
    tensorrt = standin_tensorrt(runtime)
    r = cli("run", "--artifact", built, "-n", "1")
    r.assert_failure(6)
    assert "TensorRT 10.13.0" in r.err and f"TensorRT {runtime}" in r.err
    assert "--versionCompatible" in r.err and "--rebuild" in r.err
    assert not [c for c in tensorrt.CALLS if c[0] == "deserialize_cuda_engine"]


def test_without_host_code_allowed_the_stand_in_refuses_a_version_compatible_plan(
    kit, cli, trt, standin_tensorrt
) -> None:  # noqa: ANN001
    """The stand-in enforces TensorRT's opt-in: were rmbuild not to set the flag, the load
    tests above would fail, with TensorRT's reason in the message."""
    pytest.importorskip("numpy")
    from rmbuild.backends.tensorrt.runtime import TensorRTDecoderStep
    from rmbuild.errors import IncompatibleArtifact
    from rmbuild.runtime.kvlayout import KVLayout

    trt.write_spec(fp16=VERSION_COMPATIBLE)
    built = _built(cli, trt, "fp16")["artifact"]
    standin_tensorrt("10.13.0.35")
    with Store(trt.project.store) as store:
        folder = store.materialize(built)
    layout = KVLayout.from_json(kit.LAYOUT)
    with pytest.raises(IncompatibleArtifact) as caught:
        TensorRTDecoderStep(folder / "model.plan", layout, buffers=kit.HostBuffers())
    assert "could not deserialize" in caught.value.message
    assert any("engine host code is not allowed" in line for line in caught.value.context)
    step = TensorRTDecoderStep(
        folder / "model.plan", layout, buffers=kit.HostBuffers(), version_compatible=True
    )
    assert step.engine is not None


def test_a_strict_fp32_plan_renders_no_tf32(cli, trt) -> None:  # noqa: ANN001
    trt.write_spec(
        strict={"profile": "tensorrt-fp16", "flags": {"precision": "fp32", "tf32": False}},
        fast={"profile": "tensorrt-fp16", "flags": {"precision": "fp32"}},
    )
    strict = _record(trt, _built(cli, trt, "strict")["artifact"]).metadata["argv"]
    fast = _record(trt, _built(cli, trt, "fast")["artifact"]).metadata["argv"]
    assert "--noTF32" in strict and "--fp16" not in strict
    assert "--noTF32" not in fast  # trtexec's default: TF32 on


def test_gpus_are_asked_once_per_process(monkeypatch):
    """A plan stage reads the GPUs for its key, timing-cache key and facts: one NVML or
    nvidia-smi ask serves them all, and a caller's edits do not leak into the next answer."""
    import rmbuild.host.resources
    from rmbuild.backends.tensorrt import probe as trt_probe

    calls = []

    def fake_nvidia():
        calls.append(1)
        return [{"name": "NVIDIA L4", "compute_capability": "8.9", "driver": "580.1"}]

    monkeypatch.setattr(rmbuild.host.resources, "nvidia", fake_nvidia)
    trt_probe._nvidia.cache_clear()
    try:
        first = trt_probe.gpus()
        first[0]["compute_capability"] = "0.0"
        assert trt_probe.gpu(0)["compute_capability"] == "8.9"
        assert trt_probe.devices()[0].attributes["compute_capability"] == "8.9"
        assert len(calls) == 1
    finally:
        trt_probe._nvidia.cache_clear()
