"""End to end through the real toolchain: optimum export -> ovc -> libopenvino_c generation.

Every backend must generate the PyTorch reference's greedy tokens; error paths of the C API
become rmbuild errors, never a crash.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

# Extras only through importorskip, so the module collects without them.
pytest.importorskip("openvino")
np = pytest.importorskip("numpy")

from rmbuild.backends.openvino import capi  # noqa: E402
from rmbuild.backends.openvino.plugin import IR_FILE, OpenVINOBackend  # noqa: E402
from rmbuild.backends.openvino.runtime import (  # noqa: E402
    OpenVINOCallError,
    OVCApiDecoderStep,
    OVPythonDecoderStep,
    load_api,
)
from rmbuild.errors import BackendUnavailable, IncompatibleArtifact, SessionClosed  # noqa: E402
from rmbuild.loading import load  # noqa: E402

# Same as conftest.py (fixtures carry the data; conftest is not importable in importlib mode).
PROMPT = "The future of AI is"
MAX_TOKENS = 32
Built = Reference = Any

EXPECTED_TEXT = (
    " small, fast and close to the people who use it. A model that runs on a local chip can "
    "answer a question without sending the words far away. It"
)


def _generate(built: Built, target: str, ref: Reference, **options: object) -> list[int]:
    with load(built.keys[target], store=built.store, **options) as session:
        return list(session.generate_ids(ref.prompt_ids, MAX_TOKENS))


def _tree_copy(built: Built, target: str, tmp_path: Path) -> Path:
    # Store blobs are read-only hardlinks: never write into a materialized tree, copy it.
    dest = tmp_path / target
    shutil.copytree(built.store.materialize(built.keys[target]), dest)
    for path in dest.iterdir():
        path.chmod(0o644)
    return dest


def test_reference_is_the_known_text(reference: Reference) -> None:
    # The model was trained to say this; a different reference means the fixture broke.
    assert reference.text == EXPECTED_TEXT


@pytest.mark.parametrize("target", ["ov", "ov32"])
def test_capi_session_generates_the_torch_tokens(
    built: Built, reference: Reference, target: str
) -> None:
    with load(built.keys[target], store=built.store) as session:
        assert session.info["backend"] == "openvino"
        assert session.info["device"] == "CPU"
        assert session.info["runtime"] == "capi"
        assert isinstance(session.step_fn, OVCApiDecoderStep)
        tokens = list(session.generate_ids(reference.prompt_ids, MAX_TOKENS))
        text = session.generate(PROMPT, MAX_TOKENS)
    assert tokens == reference.tokens
    assert text == reference.text


def test_python_runtime_generates_the_same_tokens(built: Built, reference: Reference) -> None:
    with load(built.keys["ov"], store=built.store, runtime="python") as session:
        assert isinstance(session.step_fn, OVPythonDecoderStep)
        assert list(session.generate_ids(reference.prompt_ids, MAX_TOKENS)) == reference.tokens


def test_first_step_logits_match_torch(built: Built, reference: Reference) -> None:
    logits = {}
    for target in ("ov", "ov32"):
        tree = built.store.materialize(built.keys[target])
        step = OVCApiDecoderStep(tree / IR_FILE, {"inference_precision": "f32"})
        try:
            logits[target] = step.step(np.asarray(reference.prompt_ids, dtype=np.int64))
        finally:
            step.close()
    # f32 weights + f32 inference: torch to rounding; fp16 weights move logits by ~1e-3..1e-2.
    np.testing.assert_allclose(logits["ov32"], reference.first_logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(logits["ov"], reference.first_logits, atol=5e-2)
    assert not np.array_equal(logits["ov"], logits["ov32"])
    assert int(logits["ov"].argmax()) == int(reference.first_logits.argmax())


def test_compression_changes_key_and_bin_size(built: Built) -> None:
    assert built.keys["ov"] != built.keys["ov32"]
    # The export stage is shared through the cache.
    assert built.results["ov"].stages[0].key == built.results["ov32"].stages[0].key
    assert built.results["ov32"].stages[0].hit
    sizes = {
        t: (built.store.materialize(k) / "openvino_model.bin").stat().st_size
        for t, k in built.keys.items()
    }
    assert 1.8 < sizes["ov32"] / sizes["ov"] < 2.1  # fp32 weights are twice fp16's
    argv = {t: r.artifact.metadata["argv"] for t, r in built.results.items()}
    assert "--compress_to_fp16=True" in argv["ov"]
    assert "--compress_to_fp16=False" in argv["ov32"]


def test_artifact_holds_ir_and_tokenizer(built: Built) -> None:
    tree = built.store.materialize(built.keys["ov"])
    for name in (IR_FILE, "openvino_model.bin", "tokenizer.json", "config.json"):
        assert (tree / name).is_file(), name
    metadata = built.results["ov"].artifact.metadata
    assert metadata["runtime_flags"] == {
        "device": "CPU",
        "inference_precision": "f32",
        "runtime": "capi",
        "num_threads": 0,
    }
    assert metadata["toolchain"]["packages"]["openvino"]


# ----------------------------------------------------------------------------- error paths


def test_corrupt_xml_is_a_call_error_with_the_status_name(built: Built, tmp_path: Path) -> None:
    tree = _tree_copy(built, "ov", tmp_path)
    xml = tree / IR_FILE
    xml.write_text(xml.read_text()[: len(xml.read_text()) // 2])  # truncated mid-element
    with pytest.raises(OpenVINOCallError) as info:
        OVCApiDecoderStep(xml, {})
    err = info.value
    assert err.function == "ov_core_read_model"
    assert err.status_name == "GENERAL_ERROR"
    assert "GENERAL_ERROR" in err.message
    assert "rmbuild verify" in (err.hint or "")


def test_missing_weights_file_is_a_call_error(built: Built, tmp_path: Path) -> None:
    tree = _tree_copy(built, "ov", tmp_path)
    (tree / "openvino_model.bin").unlink()
    with pytest.raises(OpenVINOCallError, match="ov_core_read_model"):
        OVCApiDecoderStep(tree / IR_FILE, {})


def test_not_a_kv_cache_model_is_refused(built: Built, tmp_path: Path) -> None:
    tree = _tree_copy(built, "ov", tmp_path)
    (tree / "kv_layout.json").unlink()
    xml = tree / IR_FILE
    xml.write_text(xml.read_text().replace('names="attention_mask"', 'names="mask"'))
    with pytest.raises(IncompatibleArtifact, match=r"not a KV-cache LM.*lack \['attention_mask'\]"):
        OVCApiDecoderStep(xml, {})


def test_kv_layout_is_recorded_at_build_time(built: Built) -> None:
    # The sidecar is in the artifact's manifest, read from the IR ovc wrote.
    import json

    files = built.store.get_manifest(built.results["ov"].artifact.manifest_digest).files
    assert "kv_layout.json" in files
    tree = built.store.materialize(built.keys["ov"])
    layout = json.loads((tree / "kv_layout.json").read_text())
    past = [i for i in layout["inputs"] if i["name"].startswith("past_key_values.")]
    assert past and all(i["shape"][1] == 2 and i["dtype"] == "float32" for i in past)


@pytest.mark.parametrize("step_class", [OVCApiDecoderStep, OVPythonDecoderStep])
def test_layout_from_the_graph_not_the_config(
    built: Built, reference: Reference, tmp_path: Path, step_class: type
) -> None:
    # An artifact without the sidecar whose config.json misstates the KV heads
    # (as Falcon's multi_query does) still runs: the head count comes from the IR.
    import json

    tree = _tree_copy(built, "ov32", tmp_path)
    (tree / "kv_layout.json").unlink()
    config = json.loads((tree / "config.json").read_text())
    config["num_key_value_heads"] = config["num_attention_heads"] * 2
    (tree / "config.json").write_text(json.dumps(config))
    step = step_class(tree / IR_FILE, {"inference_precision": "f32"})
    try:
        assert step.layout.source == IR_FILE
        logits = step.step(np.asarray(reference.prompt_ids, dtype=np.int64))
    finally:
        step.close()
    assert int(np.argmax(logits)) == reference.tokens[0]


@pytest.mark.parametrize("step_class", [OVCApiDecoderStep, OVPythonDecoderStep])
@pytest.mark.parametrize("sidecar", [True, False])
def test_input_with_two_names_is_found(
    built: Built, reference: Reference, tmp_path: Path, step_class: type, sidecar: bool
) -> None:
    # Ovc gave bloom's mask two names, and "any name" returned the internal one,
    # so the model was refused as "not a KV-cache LM". Give the tiny Llama's mask two names.
    from rmbuild.backends.openvino import irlayout

    tree = _tree_copy(built, "ov32", tmp_path)
    xml = tree / IR_FILE
    two = 'names="/transformer/Cast_2_output_0,attention_mask"'
    xml.write_text(xml.read_text().replace('names="attention_mask"', two))
    (tree / "kv_layout.json").unlink()
    if sidecar:  # what prepare_outputs records at build time
        irlayout.record(xml, tree)
    api = load_api()
    with capi.Core(api) as core, core.read_model(xml) as model:
        assert "/transformer/Cast_2_output_0" in model.input_names  # the C API's "any name"
    step = step_class(xml, {"inference_precision": "f32"})
    try:
        assert step.layout.spec("attention_mask").names == (
            "/transformer/Cast_2_output_0",
            "attention_mask",
        )
        tokens = []
        logits = step.step(np.asarray(reference.prompt_ids, dtype=np.int64))
        for _ in range(8):
            tokens.append(int(np.argmax(logits)))
            logits = step.step(np.asarray([tokens[-1]], dtype=np.int64))
    finally:
        step.close()
    assert tokens == reference.tokens[:8]


def test_close_is_idempotent_and_step_after_close_raises(built: Built) -> None:
    tree = built.store.materialize(built.keys["ov"])
    step = OVCApiDecoderStep(tree / IR_FILE, {})
    step.step(np.asarray([1, 2, 3], dtype=np.int64))
    step.close()
    step.close()
    # The same error on every backend: the session is closed (exit 2), before any feed.
    with pytest.raises(SessionClosed, match="closed"):
        step.step(np.asarray([1], dtype=np.int64))


def test_c_library_not_found_is_backend_unavailable(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = built.store.materialize(built.keys["ov"])
    monkeypatch.setenv(capi.ENV_VAR, str(tmp_path / "libopenvino_c.so.nope"))
    with pytest.raises(BackendUnavailable) as info:
        OVCApiDecoderStep(tree / IR_FILE, {})
    assert "rmbuild[openvino]" in (info.value.hint or "")
    assert capi.ENV_VAR in info.value.message
    # Through the loader, the plugin's availability already says so, with the install line.
    with pytest.raises(BackendUnavailable) as info:
        load(built.keys["ov"], store=built.store)
    assert "pip install 'rmbuild[openvino]'" in (info.value.hint or "")


def test_c_library_of_an_unexpected_version_is_backend_unavailable(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmbuild.backends.openvino import runtime

    fake = tmp_path / "libopenvino_c.so.1"
    fake.write_bytes(b"")  # found, but not a library OpenVINO's binding can use
    monkeypatch.setattr(runtime, "_APIS", {})

    def mismatch(path: object = None, **_: object) -> None:
        raise capi.OVVersionMismatch(f"{path} lacks C API functions ov_core_create")

    monkeypatch.setattr(capi, "load", mismatch)
    monkeypatch.setenv(capi.ENV_VAR, str(fake))
    tree = built.store.materialize(built.keys["ov"])
    with pytest.raises(BackendUnavailable, match="lacks C API functions"):
        OVCApiDecoderStep(tree / IR_FILE, {})


@pytest.mark.parametrize("device", ["NPU", "BOGUS", "HETERO:NPU,CPU"])
def test_missing_device_override_is_refused_naming_devices(built: Built, device: str) -> None:
    with pytest.raises(IncompatibleArtifact) as info:
        load(built.keys["ov"], store=built.store, device=device)
    assert repr(device) in info.value.message
    assert "CPU" in info.value.message  # the devices present
    assert "--device" in (info.value.hint or "")


def test_missing_recorded_device_is_refused_at_check(built: Built) -> None:
    metadata = dict(built.results["ov"].artifact.metadata)
    metadata["runtime_flags"] = {**metadata["runtime_flags"], "device": "NPU"}
    with pytest.raises(IncompatibleArtifact, match="'NPU'.*OpenVINO sees: CPU"):
        OpenVINOBackend().check_compatible(metadata)


def test_ir_from_a_newer_openvino_is_refused(built: Built) -> None:
    metadata = dict(built.results["ov"].artifact.metadata)
    plugin = OpenVINOBackend()
    plugin.check_compatible(metadata)  # built here: fine
    here = metadata["toolchain"]["packages"]["openvino"]
    older = {**metadata["toolchain"], "packages": {"openvino": "2025.0.0"}}
    plugin.check_compatible({**metadata, "toolchain": older})
    newer = {**metadata["toolchain"], "packages": {"openvino": "2099.1.0"}}
    with pytest.raises(IncompatibleArtifact) as info:
        plugin.check_compatible({**metadata, "toolchain": newer})
    assert "2099.1.0" in info.value.message
    assert here.split("-")[0] in info.value.message
    assert "rmbuild compile" in (info.value.hint or "")
