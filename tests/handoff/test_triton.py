"""``--to triton``: the model repository of the example's real ONNX Runtime (and OpenVINO)
artifact, its config.pbtxt parsed by tritonclient's model_config_pb2 and compared with the
graph as the runtimes themselves read it; the Python-backend LLM model driven through a
stand-in ``triton_python_backend_utils``; TensorRT plans merged under cc_model_filenames; the
container releases from Triton's published matrix."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rmbuild.handoff import triton, triton_matrix
from rmbuild.handoff.artifact import Artifact
from rmbuild.handoff.bundle import ExportOptions, write

HERE = Path(__file__).parent
pb2 = triton.model_config_pb2()
needs_tritonclient = pytest.mark.skipif(
    pb2 is None, reason="tritonclient is not installed (pip install tritonclient; dev extra)"
)


def _export(example, ref: str, out: Path, **options):  # noqa: ANN001, ANN202
    from artifact_store import Store
    from rmbuild.handoff import export

    with Store(example.store) as store:
        return export([ref], "triton", out, store=store, options=ExportOptions(**options))


def _config(path: Path):  # noqa: ANN202
    return triton.parse_config(path.read_text(), pb2)


@needs_tritonclient
def test_onnxruntime_repository_parses_and_matches_the_graph(example, tmp_path: Path) -> None:  # noqa: ANN001
    import onnxruntime as ort

    bundle = _export(example, example.artifacts["cpu"], tmp_path / "repo")
    root = bundle.root
    graph = _config(root / "tiny-llama-graph" / "config.pbtxt")
    assert graph.backend == "onnxruntime" and graph.max_batch_size == 0
    assert (root / "tiny-llama-graph" / "1" / "model.onnx").is_file()
    # The graph as ONNX Runtime itself reads it: names, element types and dims.
    sess = ort.InferenceSession(str(root / "tiny-llama-graph" / "1" / "model.onnx"))
    types = {"tensor(int64)": "TYPE_INT64", "tensor(float)": "TYPE_FP32"}
    names = {v: k for k, v in pb2.DataType.items()}

    def dims(shape) -> list[int]:  # noqa: ANN001
        return [d if isinstance(d, int) else -1 for d in shape]

    assert [(i.name, names[i.data_type], list(i.dims)) for i in graph.input] == [
        (i.name, types[i.type], dims(i.shape)) for i in sess.get_inputs()
    ]
    assert [(o.name, names[o.data_type], list(o.dims)) for o in graph.output] == [
        (o.name, types[o.type], dims(o.shape)) for o in sess.get_outputs()
    ]
    llm = _config(root / "tiny-llama" / "config.pbtxt")
    assert llm.backend == "python" and llm.model_transaction_policy.decoupled
    assert llm.parameters["artifact"].string_value == example.artifacts["cpu"]
    assert llm.parameters["max_model_len"].string_value == "256"
    assert (root / "tiny-llama" / "1" / "model.py").is_file()
    assert any("model_config_pb2" in line for line in bundle.checked)
    assert any("equal model.onnx" in line for line in bundle.checked)


@needs_tritonclient
def test_text_format_refuses_an_unknown_field() -> None:
    """The parse is a real check: a field Triton does not know fails it."""
    from google.protobuf import text_format

    with pytest.raises(text_format.ParseError, match="dynamic_batchin"):
        triton.parse_config('name: "m"\ndynamic_batchin { }\n', pb2)


@needs_tritonclient
def test_a_config_that_disagrees_with_the_graph_fails_the_check(example, tmp_path: Path) -> None:  # noqa: ANN001
    from rmbuild.errors import InternalError

    root = _export(example, example.artifacts["cpu"], tmp_path / "repo").root
    config = root / "tiny-llama-graph" / "config.pbtxt"
    text = config.read_text().replace("dims: [ -1, 2, -1, 32 ]", "dims: [ -1, 4, -1, 32 ]", 1)
    config.write_text(text)
    with pytest.raises(InternalError, match="inputs differ from model.onnx"):
        triton.check(root)


@needs_tritonclient
def test_openvino_repository_matches_the_ir(example_openvino, tmp_path: Path) -> None:  # noqa: ANN001
    import openvino as ov

    ref = example_openvino.artifacts["openvino-cpu"]
    root = _export(example_openvino, ref, tmp_path / "r").root
    graph = _config(root / "tiny-llama-graph" / "config.pbtxt")
    assert graph.backend == "openvino"
    version = root / "tiny-llama-graph" / "1"
    assert (version / "model.xml").is_file() and (version / "model.bin").is_file()
    model = ov.Core().read_model(str(version / "model.xml"))
    declared = {i.name for i in graph.input}
    for port in model.inputs:  # every IR input is declared under one of its names
        assert declared & port.get_names(), port.get_names()
    assert len(graph.input) == len(model.inputs) and len(graph.output) == len(model.outputs)
    versions = json.loads((root / "versions.json").read_text())
    assert versions["serving"]["releases"] == {example_openvino.artifacts["openvino-cpu"][:12]: []}
    assert "publishes no OpenVINO versions" in " ".join(versions["warnings"])


def _load_model_py(path: Path):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("bundle_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_tritonclient
def test_the_python_model_generates_through_rmbuilds_session(
    example, demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """The generated model.py, under a stand-in pb_utils, streams and answers the demo text."""
    from google.protobuf import json_format

    prompt, expected = demo

    root = _export(example, example.artifacts["cpu"], tmp_path / "repo").root
    pb = _standin(monkeypatch)
    monkeypatch.setenv("RMBUILD_STORE", str(example.store))
    config = _config(root / "tiny-llama" / "config.pbtxt")
    model = _load_model_py(root / "tiny-llama" / "1" / "model.py").TritonPythonModel()
    model.initialize(
        {"model_config": json_format.MessageToJson(config, preserving_proto_field_name=True)}
    )
    try:
        assert model.decoupled

        def request(**inputs) -> object:  # noqa: ANN003
            arrays = {k: np.array([v]) for k, v in inputs.items()}
            arrays["text_input"] = np.array([inputs["text_input"].encode()], dtype=object)
            return pb.Request(arrays)

        whole = request(text_input=prompt, max_tokens=np.int32(32))
        streamed = request(text_input=prompt, max_tokens=np.int32(32), stream=True)
        too_long = request(text_input=prompt, max_tokens=np.int32(400))
        assert model.execute([whole, streamed, too_long]) is None
        assert whole.sender.texts() == [expected]
        assert len(streamed.sender.texts()) > 1 and "".join(streamed.sender.texts()) == expected
        for r in (whole, streamed, too_long):
            assert r.sender.sent[-1][1] == pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        assert too_long.sender.texts() == []
        assert "limit of 256" in too_long.sender.errors()[0]
    finally:
        model.finalize()


def _standin(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    """The stand-in, importable as ``triton_python_backend_utils`` for this test."""
    name = "triton_python_backend_utils"
    spec = importlib.util.spec_from_file_location(name, HERE / "standin_pb_utils.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- TensorRT


def _trt_artifact(tmp_path: Path, cc: str | None, key: str, trt: str = "10.13.3.9") -> Artifact:
    """A TensorRT artifact as the store records one (no TensorRT here: a plan's bytes are
    opaque to the export), its graph described by kv_layout.json."""
    from datetime import UTC, datetime

    from rmbuild.runtime.kvlayout import InputSpec, KVLayout

    tree = tmp_path / key
    tree.mkdir()
    (tree / "model.plan").write_bytes(b"plan for " + (cc or "any").encode())
    layout = KVLayout(
        (
            InputSpec("input_ids", "int64", (None, None)),
            InputSpec("attention_mask", "int64", (None, None)),
            InputSpec("past_key_values.0.key", "float16", (None, 2, None, 32)),
            InputSpec("past_key_values.0.value", "float16", (None, 2, None, 32)),
        ),
        ("logits", "present.0.key", "present.0.value"),
    )
    (tree / "kv_layout.json").write_text(json.dumps(layout.to_json()))
    (tree / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 1000}))
    fp = {"tensorrt": trt, "version_compatible": False}
    fp.update({"compute_capability": cc} if cc else {"compute_capability_min": "8.0"})
    record = SimpleNamespace(
        key=key * 8,
        model="tiny-llama",
        target=f"trt-{cc}",
        backend="tensorrt",
        manifest_digest="0" * 64,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        metadata={"profile": "tensorrt-fp16", "flags": {"max_seq": 256}, "fingerprint": fp},
    )
    files = {p.name: "x" for p in tree.iterdir()}
    store = SimpleNamespace(get=lambda _key: None, root=tmp_path)
    return Artifact(record, tree, files, store)  # type: ignore[arg-type]


@needs_tritonclient
def test_tensorrt_plans_go_under_cc_model_filenames(tmp_path: Path) -> None:
    arts = [_trt_artifact(tmp_path, "8.9", "a1b2c3d4"), _trt_artifact(tmp_path, "9.0", "e5f6a7b8")]
    plan = triton.plan(arts, ExportOptions())
    write(plan, tmp_path / "repo", triton.check)
    root = tmp_path / "repo"
    config = _config(root / "tiny-llama-graph" / "config.pbtxt")
    assert config.platform == "tensorrt_plan"
    assert dict(config.cc_model_filenames) == {"8.9": "model_sm89.plan", "9.0": "model_sm90.plan"}
    assert (root / "tiny-llama-graph/1/model_sm89.plan").read_bytes() == b"plan for 8.9"
    assert (root / "tiny-llama-graph/1/model_sm90.plan").read_bytes() == b"plan for 9.0"
    assert config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU
    names = {v: k for k, v in pb2.DataType.items()}
    outputs = {o.name: (names[o.data_type], list(o.dims)) for o in config.output}
    assert outputs["logits"] == ("TYPE_FP32", [-1, -1, 1000])
    assert outputs["present.0.key"] == ("TYPE_FP16", [-1, 2, -1, 32])
    # The max_seq flag is the plan's compiled limit.
    assert "256" in plan.limits["max_model_len"]
    versions = json.loads((root / "versions.json").read_text())
    assert versions["serving"]["releases"]["a1b2c3d4a1b2"] == ["26.02", "26.01", "25.12", "25.11"]
    newest = "nvcr.io/nvidia/tritonserver:26.02-trtllm-python-py3"
    assert versions["serving"]["tritonserver"][0] == newest


def test_two_plans_for_one_compute_capability_are_refused(tmp_path: Path) -> None:
    from rmbuild.errors import UsageError

    arts = [_trt_artifact(tmp_path, "8.9", "a1b2c3d4"), _trt_artifact(tmp_path, "8.9", "e5f6a7b8")]
    with pytest.raises(UsageError, match="compute capability 8.9"):
        triton.plan(arts, ExportOptions())


# --------------------------------------------------------------------------- the matrix


def test_onnxruntime_releases_follow_rmbuilds_load_rule() -> None:
    # Extended (or lower): the build's release or a later one.
    releases, rule = triton_matrix.onnxruntime_releases("1.22.0", "extended")
    assert releases[0] == "26.08" and releases[-1] == "25.05" and "24.12" not in releases
    assert "or a later one" in rule
    # Level 'all': the same major.minor only.
    assert triton_matrix.onnxruntime_releases("1.23.0", "all")[0] == [
        "26.01",
        "25.12",
        "25.11",
        "25.10",
        "25.09",
        "25.08",
    ]
    # A plain export: every release.
    assert len(triton_matrix.onnxruntime_releases(None, None)[0]) == len(triton_matrix.ONNXRUNTIME)
    # Newer than any published release: none, and why.
    found = triton_matrix.releases_for("onnxruntime", {"onnxruntime": "1.32.0"}, {}, {})
    assert found["releases"] == [] and "1.28.0" in found["none_because"]


def test_tensorrt_releases_exact_or_version_compatible() -> None:
    exact, _ = triton_matrix.tensorrt_releases("10.11.0.33", version_compatible=False)
    assert exact == ["25.10", "25.09", "25.08"]
    forward, rule = triton_matrix.tensorrt_releases("10.11.0.33", version_compatible=True)
    assert forward[0] == "26.07" and forward[-1] == "25.08" and "25.07" not in forward
    assert "versionCompatible" in rule
