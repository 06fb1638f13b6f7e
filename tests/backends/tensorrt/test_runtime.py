"""The TensorRT load path up to the device call, against the stand-in ``tensorrt`` module:
header checked before deserializing, one execution context, set_input_shape /
set_tensor_address for every tensor, execute_async_v3; a shape past the plan's profile is
ArtifactInputMismatch (exit 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact_store import Store


def _plan(
    kit,  # noqa: ANN001
    folder: Path,
    version: tuple[int, int, int, int],
    layout: dict,
    max_seq: int = 8,
    *,
    version_compatible: bool = False,
) -> Path:
    """A plan file as the stand-in trtexec writes it: a real plan's header, then the payload."""
    payload = {
        "inputs": [
            {
                **i,
                "trt_dtype": "INT64" if i["dtype"] == "int64" else "FLOAT",
                "profile": {
                    # The past length may be 0 (prefill), as shapes.derive gives trtexec.
                    "min": [
                        0 if a == 2 else 1 if d is None else d for a, d in enumerate(i["shape"])
                    ],
                    "max": [max_seq if d is None else d for d in i["shape"]],
                },
            }
            for i in layout["inputs"]
        ],
        "vocab_size": 1000,
        "version_compatible": version_compatible,
    }
    path = folder / "model.plan"
    path.write_bytes(kit.real_header(version) + json.dumps(payload).encode())
    (folder / "kv_layout.json").write_text(json.dumps(layout))
    return path


def _metadata() -> dict:
    return {
        "stage": "compile",
        "spec_file": "/p/model.yaml",
        "target": "fp16",
        "fingerprint": {"tensorrt": "10.13.0", "compute_capability": "8.6"},
    }


def test_a_plan_header_of_another_version_is_refused_before_deserializing(
    kit, tmp_path: Path, standin_tensorrt
) -> None:  # noqa: ANN001
    from rmbuild.backends.tensorrt.plugin import TensorRTBackend
    from rmbuild.errors import IncompatibleArtifact

    tensorrt = standin_tensorrt("10.13.0.35")
    _plan(kit, tmp_path, (10, 12, 0, 9), kit.LAYOUT)  # the header says 10.12.0, whatever
    # the metadata says
    with pytest.raises(IncompatibleArtifact) as caught:
        TensorRTBackend().create_session(tmp_path, _metadata(), {})
    assert "TensorRT 10.12.0 (plan header)" in caught.value.message
    assert "10.13.0.35" in caught.value.message
    assert "--rebuild" in (caught.value.hint or "")
    assert not [c for c in tensorrt.CALLS if c[0] == "deserialize_cuda_engine"]


def test_a_file_that_is_no_plan_is_refused_by_its_magic(tmp_path: Path, standin_tensorrt) -> None:  # noqa: ANN001
    from rmbuild.backends.tensorrt.plugin import TensorRTBackend
    from rmbuild.errors import IncompatibleArtifact

    standin_tensorrt()
    (tmp_path / "model.plan").write_bytes(b"\x08\x01onnx graph, not a plan" + bytes(16))
    with pytest.raises(IncompatibleArtifact, match="not a TensorRT plan"):
        TensorRTBackend().create_session(tmp_path, _metadata(), {})


def test_decode_steps_reach_the_device_call(kit, tmp_path: Path, standin_tensorrt) -> None:  # noqa: ANN001
    np = pytest.importorskip("numpy")
    from rmbuild.backends.tensorrt.runtime import TensorRTDecoderStep
    from rmbuild.errors import ArtifactInputMismatch
    from rmbuild.runtime.kvlayout import KVLayout

    tensorrt = standin_tensorrt("10.13.0.35")
    plan = _plan(kit, tmp_path, (10, 13, 0, 35), kit.LAYOUT, max_seq=8)
    layout = KVLayout.from_json(kit.LAYOUT)
    step = TensorRTDecoderStep(plan, layout, buffers=kit.HostBuffers())
    logits = step.step(np.array([5, 6, 7], dtype=np.int64))
    assert logits.shape == (1000,)
    shapes = dict(c[1] for c in tensorrt.CALLS if c[0] == "set_input_shape")
    assert shapes["input_ids"] == (1, 3) and shapes["attention_mask"] == (1, 3)
    assert shapes["past_key_values.0.key"] == (
        1,
        kit.HEADS,
        0,
        kit.HEAD_DIM,
    )  # prefill: empty cache
    runs = [c[1] for c in tensorrt.CALLS if c[0] == "execute_async_v3"]
    assert runs == [{"stream": 7, "missing": []}]  # every tensor had an address
    step.step(np.array([8], dtype=np.int64))
    shapes = dict(c[1] for c in tensorrt.CALLS if c[0] == "set_input_shape")
    assert shapes["past_key_values.1.value"] == (1, kit.HEADS, 3, kit.HEAD_DIM)
    assert shapes["position_ids"] == (1, 1) and shapes["attention_mask"] == (1, 4)
    assert len([c for c in tensorrt.CALLS if c[0] == "create_execution_context"]) == 1
    # Past the plan's profile (max_seq 8): the loop's exit-6 error names the input.
    with pytest.raises(ArtifactInputMismatch) as caught:
        step.step(np.arange(6, dtype=np.int64))
    assert "optimization profile" in caught.value.message


def test_the_plans_profile_is_the_compiled_context_limit(
    kit, tmp_path: Path, standin_tensorrt
) -> None:  # noqa: ANN001
    pytest.importorskip("numpy")
    from rmbuild.backends.tensorrt.runtime import TensorRTDecoderStep
    from rmbuild.errors import ContextTooLong, IncompatibleArtifact
    from rmbuild.runtime import limits
    from rmbuild.runtime.kvlayout import KVLayout

    standin_tensorrt("10.13.0.35")
    plan = _plan(kit, tmp_path, (10, 13, 0, 35), kit.LAYOUT, max_seq=8)
    step = TensorRTDecoderStep(plan, KVLayout.from_json(kit.LAYOUT), buffers=kit.HostBuffers())
    config = {"model_type": "llama", "max_position_embeddings": 256}
    limit = limits.for_artifact(config, {}, step)
    assert (limit.value, limit.compiled.value) == (8, 8)
    assert "optimization profile" in limit.source
    # A request past the profile is refused before set_input_shape could say False.
    with pytest.raises(ContextTooLong):
        limits.check_fits(limit, 6, 3)
    with pytest.raises(IncompatibleArtifact, match="compiled limit of 8 tokens") as caught:
        limits.for_artifact(config, {}, step, requested=9)
    assert "rebuild with a larger max_seq flag" in str(caught.value.hint)


def test_rmbuild_load_goes_through_compat_checks_to_the_device_call(
    kit, cli, trt, standin_tensorrt
) -> None:  # noqa: ANN001
    pytest.importorskip("numpy")
    pytest.importorskip("tokenizers")
    from rmbuild.loading import load

    tensorrt = standin_tensorrt("10.13.0.35")
    r = cli("compile", str(trt.spec), "-t", "fp16", "--json")
    assert r.code == 0, r.err
    key = json.loads(r.out)[0]["artifact"]
    with Store(trt.project.store) as store:
        session = load(key, store=store, buffers=kit.HostBuffers(next_token=42))
        try:
            prompt = session.tokenizer.encode("hello")
            ids = list(session.generate_ids(prompt, max_tokens=3))
            text = session.generate("hello", max_tokens=3)
        finally:
            session.close()
    # The "device" said 42 every step: greedy decoding took it three times, and the text is
    # the tokenizer's for those ids.
    assert ids == [42, 42, 42]
    assert text == session.tokenizer.decode([42, 42, 42])
    assert len([c for c in tensorrt.CALLS if c[0] == "execute_async_v3"]) == 6  # 2 x 3 steps
    assert session.info["backend"] == "tensorrt" and session.info["tensorrt"] == "10.13.0.35"
