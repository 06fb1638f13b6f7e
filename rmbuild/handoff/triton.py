"""``--to triton``: a Triton Inference Server model repository.

Two models per bundle:

* ``<name>-graph``: the artifact's graph as Triton's own backend runs it: ONNX Runtime
  (``backend: "onnxruntime"``, ``1/model.onnx``), OpenVINO (``backend: "openvino"``,
  ``1/model.xml`` + ``model.bin``) or TensorRT (``platform: "tensorrt_plan"``, one plan per
  GPU compute capability under ``cc_model_filenames``; several TensorRT artifacts of one model
  merge into one model). Its inputs and outputs, their data types and dims, are read from the
  artifact's graph (``kv_layout.json`` and the graph file; a TensorRT plan's from the ONNX graph
  it was built from). A client drives the KV-cache loop itself (``max_batch_size: 0``: the
  batch dim is the graph's own).
* ``<name>``: a Python-backend model (:mod:`rmbuild.handoff.triton_model`), decoupled so it
  streams, that generates text through rmbuild's session: ``text_input`` in, ``text_output``
  out, as Triton's LLM backends take them.

Each ``config.pbtxt`` is parsed with ``tritonclient``'s ``model_config_pb2`` (protobuf's text
format refuses unknown fields) and the graph model's checked against the graph, input by
input. ``versions.json`` names the container releases whose backend version loads the
artifact (:mod:`rmbuild.handoff.triton_matrix`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmbuild.errors import InternalError, UsageError
from rmbuild.handoff import triton_matrix
from rmbuild.handoff.artifact import Artifact, artifact_json, engines_for, refuse
from rmbuild.handoff.bundle import Command, ExportOptions, Link, Plan, Rel
from rmbuild.runtime import kvlayout

ENGINE = "triton"
TITLE = "Triton Inference Server"
GRAPH_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
# numpy dtype names -> Triton's data types.
TRITON_TYPES = {
    "bytes": "TYPE_STRING",
    "bool": "TYPE_BOOL",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}
# ONNX TensorProto element types beyond kvlayout's table.
_ONNX_TYPES = {**kvlayout.ONNX_DTYPES, 9: "bool", 3: "int8"}
# OpenVINO IR element types / precisions -> numpy names.
_OV_TYPES = {
    "f32": "float32",
    "fp32": "float32",
    "f16": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "i64": "int64",
    "i32": "int32",
    "boolean": "bool",
    "bool": "bool",
}
# The graph file each backend's artifact holds, and the name Triton's backend loads it by.
GRAPH_FILES = {"onnxruntime": "model.onnx", "openvino": "model.xml", "tensorrt": "model.plan"}
ARTIFACT_GRAPH = {
    "onnxruntime": "model.onnx",
    "openvino": "openvino_model.xml",
    "tensorrt": "model.plan",
}
# ovc's names -> the names Triton's openvino backend looks for (the .bin follows the .xml).
OV_RENAME = {"openvino_model.xml": "model.xml", "openvino_model.bin": "model.bin"}


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: name, numpy dtype name, dims (-1: dynamic)."""

    name: str
    dtype: str
    dims: tuple[int, ...]


# --------------------------------------------------------------------------- the graph


def _onnx_io(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    init = {t.name for t in graph.initializer}

    def tensors(values: Any) -> list[Tensor]:
        out = []
        for v in values:
            if v.name in init:
                continue
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            out.append(Tensor(v.name, _ONNX_TYPES.get(t.elem_type, f"onnx:{t.elem_type}"), dims))
        return out

    return tensors(graph.input), tensors(graph.output)


def _ov_io(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """Inputs (Parameter layers) and outputs (Result layers, named by the port feeding them)
    of an OpenVINO IR, from its XML."""
    from rmbuild.backends.openvino.irlayout import port_names

    root = ET.parse(path).getroot()
    layers = {layer.get("id"): layer for layer in root.iter("layer")}
    feeding = {
        e.get("to-layer"): (e.get("from-layer"), e.get("from-port")) for e in root.iter("edge")
    }

    def dims(port: Any) -> tuple[int, ...]:
        return tuple(int(d.text) if int(d.text) >= 0 else -1 for d in port.iterfind("dim"))

    inputs, outputs = [], []
    for layer_id, layer in layers.items():
        kind = layer.get("type")
        if kind == "Parameter":
            port = layer.find("output/port")
            data = layer.find("data")
            names = port_names(port.get("names")) if port is not None else ()
            etype = (data.get("element_type") if data is not None else "") or ""
            name = kvlayout.canonical_name(names or (layer.get("name") or "",))
            inputs.append(Tensor(name, _OV_TYPES.get(etype, etype), dims(port)))
        elif kind == "Result":
            port = layer.find("input/port")
            src_layer, src_port = feeding.get(layer_id, (None, None))
            names: tuple[str, ...] = ()
            src = layers.get(src_layer)
            if src is not None:
                for p in src.iterfind("output/port"):
                    if p.get("id") == src_port:
                        names = port_names(p.get("names"))
            precision = (port.get("precision") if port is not None else "") or ""
            outputs.append(
                Tensor(
                    kvlayout.canonical_name(names or (layer.get("name") or "",)),
                    _OV_TYPES.get(precision.lower(), precision.lower()),
                    dims(port) if port is not None else (),
                )
            )
    return inputs, outputs


def _derived_io(art: Artifact) -> tuple[list[Tensor], list[Tensor]]:
    """From ``kv_layout.json`` and config.json, where the graph cannot be read here (a
    TensorRT plan whose ONNX graph is not in this store): logits over the vocabulary, a
    ``present`` for each ``past`` input of the same shape and dtype."""
    layout = art.layout()
    if layout is None:
        refuse(art, ENGINE, "it carries no kv_layout.json to read its inputs from", "rebuild it")
    assert layout is not None
    inputs = [
        Tensor(s.name, s.dtype, tuple(-1 if d is None else d for d in s.shape))
        for s in layout.inputs
    ]
    vocab = art.config.get("vocab_size")
    past = {s.name: s for s in layout.past}
    outputs = []
    for name in layout.outputs:
        if name == "logits":
            outputs.append(Tensor(name, "float32", (-1, -1, int(vocab) if vocab else -1)))
        elif name.startswith(kvlayout.PRESENT_PREFIX):
            src = past.get(kvlayout.PAST_PREFIX + name[len(kvlayout.PRESENT_PREFIX) :])
            shape = tuple(-1 if d is None else d for d in src.shape) if src else (-1,) * 4
            outputs.append(
                Tensor(name, src.dtype if src else "float32", (*shape[:2], -1, *shape[3:]))
            )
    return inputs, outputs


def graph_io(art: Artifact) -> tuple[list[Tensor], list[Tensor], str]:
    """The artifact's graph inputs and outputs, and where they were read from."""
    if art.backend == "onnxruntime":
        try:
            return (*_onnx_io(art.tree / "model.onnx"), "model.onnx")
        except ImportError:
            return (*_derived_io(art), f"{kvlayout.SIDECAR} + config.json (onnx not installed)")
    if art.backend == "openvino":
        return (*_ov_io(art.tree / ARTIFACT_GRAPH["openvino"]), ARTIFACT_GRAPH["openvino"])
    # TensorRT: the plan cannot be read without TensorRT; the ONNX graph it was built from can.
    for parent in art.metadata.get("parents") or []:
        record = art.store.get(parent) if isinstance(parent, str) else None
        if record is None:
            continue
        tree = art.store.materialize(record.key)
        if (tree / "model.onnx").is_file():
            try:
                return (*_onnx_io(tree / "model.onnx"), f"model.onnx of {record.key[:12]}")
            except ImportError:
                break
    return (*_derived_io(art), f"{kvlayout.SIDECAR} + config.json")


# --------------------------------------------------------------------------- config.pbtxt


def _tensor_block(tensors: list[Tensor], optional: frozenset[str] = frozenset()) -> str:
    items = []
    for t in tensors:
        dims = ", ".join(str(d) for d in t.dims)
        extra = " optional: true" if t.name in optional else ""
        items.append(
            f'  {{ name: "{t.name}" data_type: {TRITON_TYPES.get(t.dtype, "TYPE_INVALID")} '
            f"dims: [ {dims} ]{extra} }}"
        )
    return "[\n" + ",\n".join(items) + "\n]"


def graph_config(
    name: str, backend: str, inputs: list[Tensor], outputs: list[Tensor], plans: dict[str, str]
) -> str:
    """The graph model's config.pbtxt (``plans``: compute capability -> plan file)."""
    lines = [f'name: "{name}"']
    if backend == "tensorrt":
        lines.append('platform: "tensorrt_plan"')
    else:
        lines.append(f'backend: "{backend}"')
    lines += [
        "max_batch_size: 0",
        f"input {_tensor_block(inputs)}",
        f"output {_tensor_block(outputs)}",
    ]
    if backend == "tensorrt":
        default = sorted(plans.values())[0]
        lines.append(f'default_model_filename: "{default}"')
        for cc, filename in sorted(plans.items()):
            if cc != "any":
                lines.append(f'cc_model_filenames {{ key: "{cc}" value: "{filename}" }}')
        lines.append("instance_group [ { kind: KIND_GPU count: 1 } ]")
    else:
        lines.append(f'default_model_filename: "{GRAPH_FILES[backend]}"')
        lines.append("instance_group [ { kind: KIND_CPU count: 1 } ]")
    return "\n".join(lines) + "\n"


LLM_INPUTS = [
    Tensor("text_input", "bytes", (1,)),
    Tensor("max_tokens", "int32", (1,)),
    Tensor("temperature", "float32", (1,)),
    Tensor("top_p", "float32", (1,)),
    Tensor("seed", "int64", (1,)),
    Tensor("stream", "bool", (1,)),
]


def llm_config(name: str, params: dict[str, str]) -> str:
    """The Python-backend LLM model's config.pbtxt: decoupled, so it can stream."""
    inputs = _tensor_block(LLM_INPUTS, frozenset(t.name for t in LLM_INPUTS[1:]))
    parameters = ",\n".join(
        f'  {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in sorted(params.items())
    )
    return (
        f'name: "{name}"\n'
        'backend: "python"\n'
        "max_batch_size: 0\n"
        "model_transaction_policy { decoupled: true }\n"
        f"input {inputs}\n"
        'output [\n  { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] }\n]\n'
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
        f"parameters [\n{parameters}\n]\n"
    )


# --------------------------------------------------------------------------- plan


def _plans(artifacts: list[Artifact]) -> dict[str, Artifact]:
    """TensorRT artifacts by compute capability ("any" for a hardware-compatible plan)."""
    by_cc: dict[str, Artifact] = {}
    for art in artifacts:
        fp = art.fingerprint
        cc = str(fp.get("compute_capability") or "any")
        if cc in by_cc:
            raise UsageError(
                f"two TensorRT artifacts for compute capability {cc}: {by_cc[cc].label} and "
                f"{art.label}",
                hint="give one plan per GPU compute capability",
            )
        by_cc[cc] = art
    return by_cc


def plan(artifacts: list[Artifact], options: ExportOptions) -> Plan:
    """The model repository (see the module docstring)."""
    first = artifacts[0]
    for art in artifacts:
        if art.backend not in GRAPH_BACKENDS or ARTIFACT_GRAPH[art.backend] not in art.files:
            refuse(
                art,
                ENGINE,
                f"Triton runs ONNX Runtime, OpenVINO and TensorRT graphs; this is a "
                f"{art.backend} artifact",
                "use " + ", ".join(f"--to {e}" for e in engines_for(art.backend)),
            )
    if len(artifacts) > 1 and (
        any(a.backend != "tensorrt" for a in artifacts) or len({a.model for a in artifacts}) != 1
    ):
        raise UsageError(
            "--to triton merges several artifacts only as TensorRT plans of one model "
            "(one per GPU compute capability)",
            context=[a.label for a in artifacts],
            hint="export each other artifact to a repository of its own",
        )
    name = options.name or first.model
    graph_name = f"{name}-graph"
    inputs, outputs, read_from = graph_io(first)
    files: dict[str, Any] = {}
    plans: dict[str, str] = {}
    if first.backend == "tensorrt":
        for cc, art in _plans(artifacts).items():
            filename = "model.plan" if cc == "any" else f"model_sm{cc.replace('.', '')}.plan"
            plans[cc] = filename
            files[f"{graph_name}/1/{filename}"] = Link(art.tree / "model.plan")
    else:
        for rel in first.files:
            graph_file = rel == ARTIFACT_GRAPH[first.backend] or rel in OV_RENAME
            # The graph and its external data; the carried HF files (config, tokenizer, chat
            # template) are the Python model's business, read through the store.
            if graph_file or not rel.endswith((".json", ".txt", ".jinja", ".model")):
                files[f"{graph_name}/1/{OV_RENAME.get(rel, rel)}"] = Link(first.tree / rel)
    files[f"{graph_name}/config.pbtxt"] = graph_config(
        graph_name, first.backend, inputs, outputs, plans
    )
    limit = first.context_limit(options.max_model_len)
    files[f"{name}/config.pbtxt"] = llm_config(
        name, {"artifact": first.key, "max_model_len": str(limit.value), "store": ""}
    )
    files[f"{name}/1/model.py"] = Path(__file__).with_name("triton_model.py").read_text()
    files[f"{name}/1/artifact.json"] = artifact_json(first) + "\n"
    command = Command(
        ["tritonserver", "--model-repository", Rel("."), "--http-port", str(options.port)]
    )
    matches = {
        art.key: triton_matrix.releases_for(art.backend, art.packages, art.fingerprint, art.flags)
        for art in artifacts
    }
    serving = {
        "tritonserver": matches[first.key]["containers"][:3] or matches[first.key]["none_because"],
        "backend": first.backend,
        "rule": matches[first.key]["rule"],
        "releases": {k[:12]: v["releases"] for k, v in matches.items()},
        "matrix": triton_matrix.MATRIX_URL,
        "python_model": "rmbuild with the artifact's runtime in the container "
        f"(rmbuild {first.metadata.get('rmbuild_version') or ''}; "
        f"pip install 'rmbuild[{_extra(first.backend)}]') and the store (RMBUILD_STORE)",
    }
    where = {"onnxruntime": "CPU (KIND_CPU)", "openvino": "CPU (KIND_CPU)"}.get(
        first.backend, "GPU (KIND_GPU)"
    )
    plan_note = (
        "TensorRT plans: "
        + ", ".join(f"compute capability {cc} -> `{f}`" for cc, f in sorted(plans.items()))
        + " (`cc_model_filenames`; Triton loads the one for its GPU, else the default)."
        if plans
        else ""
    )
    return Plan(
        engine=ENGINE,
        title=TITLE,
        name=name,
        artifacts=list(artifacts),
        files=files,
        command=command,
        limits={
            "max_model_len": f"{limit.value} ({limit.source}), the `{name}` model's parameter",
            "batch": "max_batch_size 0: the graph's own batch dim (no dynamic batching: each "
            "sequence has its KV cache)",
            "devices": f"{where}, one instance",
        },
        serving=serving,
        readme=[
            "## What is here",
            "",
            f"- `{graph_name}/`: the artifact's graph on Triton's {first.backend} backend. "
            f"Inputs and outputs read from {read_from}: "
            + ", ".join(f"`{t.name}` {t.dtype} {list(t.dims)}" for t in inputs[:3])
            + f", ... ({len(inputs)} inputs, {len(outputs)} outputs). {plan_note}",
            f"- `{name}/`: a Python-backend model, decoupled (it streams), that generates "
            "through rmbuild's session: send `text_input` (and optionally `max_tokens`, "
            "`temperature`, `top_p`, `seed`, `stream`), get `text_output`, e.g. "
            f"`curl localhost:{options.port}/v2/models/{name}/generate -d "
            '\'{"text_input": "The future of AI is", "max_tokens": 32}\'`. '
            "It needs rmbuild in the container and the store: mount it and set "
            f"`RMBUILD_STORE` (or `rmbuild pull {first.key[:12]}` there).",
        ],
        hardware="Running needs a Triton server (the containers in versions.json"
        + (", on a GPU of the compute capability the plans were built for" if plans else "")
        + "); here each config.pbtxt is parsed with tritonclient's model_config_pb2 and the "
        "graph model's inputs and outputs are compared with the graph.",
        extra_versions={"triton": {"graph_io_from": read_from, "plans": plans}},
        warnings=[v["none_because"] for v in matches.values() if v["none_because"]],
    )


def _extra(backend: str) -> str:
    return {"onnxruntime": "onnx"}.get(backend, backend)


# --------------------------------------------------------------------------- check


def model_config_pb2() -> Any:
    """tritonclient's ``model_config_pb2``, loaded from its file: importing
    ``tritonclient.grpc`` would need grpcio, which the message module itself does not."""
    import importlib.util

    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        return None
    loader_spec = importlib.util.spec_from_file_location("_rmbuild_model_config_pb2", path)
    assert loader_spec is not None and loader_spec.loader is not None
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def parse_config(text: str, pb2: Any) -> Any:
    """``config.pbtxt`` as Triton's ModelConfig message (text_format refuses unknown fields)."""
    from google.protobuf import text_format

    return text_format.Parse(text, pb2.ModelConfig())


def check(root: Path) -> list[str]:
    """Every config.pbtxt parsed by tritonclient's model_config_pb2 (where tritonclient is
    installed); the graph model's inputs/outputs equal the graph's; each model has ``1/``."""
    pb2 = model_config_pb2()
    checked = []
    graph_models = [p.parent for p in root.glob("*-graph/config.pbtxt")]
    for config_path in sorted(root.glob("*/config.pbtxt")):
        model_dir = config_path.parent
        if not (model_dir / "1").is_dir():
            raise InternalError(f"{model_dir.name}/ has no version folder 1/")
        if pb2 is None:
            continue
        try:
            config = parse_config(config_path.read_text(encoding="utf-8"), pb2)
        except Exception as exc:  # noqa: BLE001 - text_format's ParseError, reported
            raise InternalError(f"{model_dir.name}/config.pbtxt: {exc}") from None
        if config.name != model_dir.name:
            raise InternalError(f"{model_dir.name}/config.pbtxt names model {config.name!r}")
        checked.append(
            f"{model_dir.name}/config.pbtxt parsed by tritonclient's model_config_pb2 "
            f"({len(config.input)} inputs, {len(config.output)} outputs)"
        )
        if model_dir in graph_models:
            checked.append(_against_graph(model_dir, config, pb2))
    if pb2 is None:
        checked.append(
            "config.pbtxt files not parsed: tritonclient is not installed here "
            "(pip install tritonclient)"
        )
    return checked


def _against_graph(model_dir: Path, config: Any, pb2: Any) -> str:
    version = model_dir / "1"
    if (version / "model.onnx").is_file():
        try:
            inputs, outputs = _onnx_io(version / "model.onnx")
        except ImportError:
            return "graph not read (onnx is not installed here)"
        source = "model.onnx"
    elif (version / "model.xml").is_file():
        inputs, outputs = _ov_io(version / "model.xml")
        source = "model.xml"
    else:
        # A plan is read only by TensorRT itself: its tensors were taken from the ONNX graph
        # it was built from (versions.json says which), and the parse above checked the rest.
        return f"{model_dir.name}: a TensorRT plan (not readable without TensorRT)"
    names = {v: k for k, v in pb2.DataType.items()}
    pairs = (("input", config.input, inputs), ("output", config.output, outputs))
    for kind, declared, actual in pairs:
        got = {t.name: (names[t.data_type], tuple(t.dims)) for t in declared}
        want = {t.name: (TRITON_TYPES.get(t.dtype, "?"), t.dims) for t in actual}
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))
            raise InternalError(f"{model_dir.name}: {kind}s differ from {source}: {diff[:4]}")
    return (
        f"{model_dir.name}: {len(inputs)} inputs and {len(outputs)} outputs equal {source}'s "
        "names, data types and dims"
    )
