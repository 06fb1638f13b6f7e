"""The KV-cache layout of an exported causal LM, read from the artifact's own graph.

Every runtime feeds the same kind of graph (``optimum-cli export onnx --task
text-generation-with-past`` and what the vendor compilers make of it): ``input_ids``,
``attention_mask``, optional ``position_ids`` and ``past_key_values.<i>.key|value`` of shape
``[batch, kv_heads, past_len, head_dim]``; outputs ``logits`` and ``present.<i>.key|value``.
What differs between models is the number of KV heads, the head dim, the cache dtype and the
input order, and guessing them from ``config.json`` fails: Falcon spells the head count
``num_kv_heads`` and, with ``multi_query: true``, has one KV head whatever the config says
elsewhere. So the layout is read from the graph's declared inputs, once:

* at build time, by each backend's ``prepare_outputs`` hook, into the sidecar ``kv_layout.json``
  (part of the artifact's manifest, so it is hashed and verified like every other file);
* at load time, from the graph itself, for artifacts built before the sidecar existed.

The config is consulted only for a dimension the graph leaves dynamic.

A graph input can carry several names (``ovc`` gives bloom's mask both
``/transformer/Cast_2_output_0`` and ``attention_mask``): a port is matched on all of its names,
never on "any" one of them. This module is vendor-neutral (stdlib; ``onnx`` only
inside :func:`from_onnx`): backends call it, it never imports a backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmbuild.errors import IncompatibleArtifact

SIDECAR = "kv_layout.json"
FORMAT = 1
KNOWN_INPUTS = ("input_ids", "attention_mask", "position_ids")
PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."
REQUIRED_INPUTS = ("input_ids", "attention_mask")

# ONNX TensorProto element types -> numpy dtype names (the ones a KV-cache LM export uses).
ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 6: "int32", 7: "int64"}


@dataclass(frozen=True)
class InputSpec:
    """One graph input: its canonical name, numpy dtype name and shape (None = dynamic dim)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    names: tuple[str, ...] = ()  # every name the graph gives this input

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"[{dims}] {self.dtype}"


@dataclass(frozen=True)
class KVLayout:
    """What a KV-cache decode loop needs to know about a graph's inputs and outputs."""

    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    source: str = "graph"  # where it was read from: kv_layout.json, the graph, io.json+config
    _by_name: dict[str, InputSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({spec.name: spec for spec in self.inputs})

    @property
    def input_names(self) -> list[str]:
        """Canonical input names in the graph's order (IREE feeds them positionally)."""
        return [spec.name for spec in self.inputs]

    @property
    def past(self) -> list[InputSpec]:
        """The KV-cache inputs, in the graph's order."""
        return [spec for spec in self.inputs if spec.name.startswith(PAST_PREFIX)]

    @property
    def present_names(self) -> list[str]:
        """The output that becomes each past input on the next step, in ``past`` order."""
        return [present_name(spec.name) for spec in self.past]

    def spec(self, name: str) -> InputSpec | None:
        return self._by_name.get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "inputs": [
                {"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "names": list(s.names)}
                for s in self.inputs
            ],
            "outputs": list(self.outputs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = SIDECAR) -> KVLayout:
        if data.get("format") != FORMAT:
            raise ValueError(f"{SIDECAR} has format {data.get('format')!r}, expected {FORMAT}")
        inputs = tuple(
            InputSpec(
                name=str(item["name"]),
                dtype=str(item["dtype"]),
                shape=tuple(None if d is None else int(d) for d in item["shape"]),
                names=tuple(item.get("names") or (item["name"],)),
            )
            for item in data["inputs"]
        )
        return _checked(cls(inputs, tuple(data["outputs"]), source), source)


def present_name(past: str) -> str:
    return PRESENT_PREFIX + past[len(PAST_PREFIX) :]


def canonical_name(names: Iterable[str]) -> str:
    """The name rmbuild feeds a port by: a name of the export's contract if the port has one
    (``attention_mask`` rather than ``/transformer/Cast_2_output_0``), else the first in order."""
    names = list(names)
    for name in names:
        if (
            name in KNOWN_INPUTS
            or name.startswith((PAST_PREFIX, PRESENT_PREFIX))
            or name == "logits"
        ):
            return name
    return sorted(names)[0] if names else ""


def config_kv_heads(config: dict[str, Any]) -> int | None:
    """KV heads as the HF config says them, for a graph whose head dim is dynamic.

    Falcon: ``num_kv_heads`` and ``multi_query`` (one KV head); others ``num_key_value_heads``;
    plain multi-head attention has as many KV heads as attention heads.
    """
    if config.get("multi_query") and not config.get("new_decoder_architecture"):
        return 1
    for key in ("num_key_value_heads", "num_kv_heads", "n_head_kv"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    heads = config.get("num_attention_heads") or config.get("n_head")
    return int(heads) if heads else None


def config_head_dim(config: dict[str, Any]) -> int | None:
    if isinstance(config.get("head_dim"), int):
        return int(config["head_dim"])
    heads = config.get("num_attention_heads") or config.get("n_head")
    hidden = config.get("hidden_size") or config.get("n_embd")
    return int(hidden) // int(heads) if hidden and heads else None


def from_ports(
    ports: Iterable[tuple[Iterable[str], Sequence[int | None], str]],
    outputs: Iterable[Iterable[str]],
    *,
    config: dict[str, Any] | None = None,
    source: str = "graph",
) -> KVLayout:
    """The layout from a graph's inputs (names, shape with None for dynamic dims, numpy dtype
    name) and outputs (names), in order. Dynamic KV head/head-dim dims are filled from
    ``config``; a graph that is no KV-cache LM raises IncompatibleArtifact."""
    config = config or {}
    inputs: list[InputSpec] = []
    for names, shape, dtype in ports:
        names = tuple(names)
        name = canonical_name(names)
        dims = tuple(None if d is None or int(d) < 0 else int(d) for d in shape)
        if name.startswith(PAST_PREFIX) and len(dims) == 4:
            heads = dims[1] if dims[1] is not None else config_kv_heads(config)
            head_dim = dims[3] if dims[3] is not None else config_head_dim(config)
            dims = (dims[0], heads, dims[2], head_dim)
        inputs.append(InputSpec(name, dtype, dims, names))
    output_names = tuple(canonical_name(names) for names in outputs)
    return _checked(KVLayout(tuple(inputs), output_names, source), source)


def _checked(layout: KVLayout, source: str) -> KVLayout:
    names = set(layout.input_names)
    missing = [n for n in REQUIRED_INPUTS if n not in names]
    if missing:
        raise IncompatibleArtifact(
            f"not a KV-cache LM: its inputs lack {missing} ({source})",
            context=["inputs: " + ", ".join("|".join(s.names or (s.name,)) for s in layout.inputs)],
            hint="export with task text-generation-with-past (the onnx-export profile's default)",
        )
    for spec in layout.past:
        if len(spec.shape) != 4 or spec.shape[1] is None or spec.shape[3] is None:
            raise IncompatibleArtifact(
                f"cannot tell the KV cache layout of {spec.name}: {spec.describe()} ({source})",
                hint="rmbuild feeds caches of shape [batch, kv_heads, past_len, head_dim]; "
                "the graph and config.json leave the head count or head dim open",
            )
    unknown = names - set(KNOWN_INPUTS) - {s.name for s in layout.past}
    if unknown:
        raise IncompatibleArtifact(
            f"the graph has inputs rmbuild cannot feed: {sorted(unknown)} ({source})"
        )
    return layout


def read_sidecar(folder: Path) -> KVLayout | None:
    """The layout recorded at build time, or None for an artifact built without one."""
    path = folder / SIDECAR
    if not path.is_file():
        return None
    return KVLayout.from_json(json.loads(path.read_text()), source=SIDECAR)


def write_sidecar(folder: Path, layout: KVLayout) -> Path:
    path = folder / SIDECAR
    path.write_text(json.dumps(layout.to_json(), indent=1) + "\n")
    return path


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def from_onnx(model: Path, config: dict[str, Any] | None = None) -> KVLayout:
    """The layout of an ONNX graph (weights not loaded). Needs the ``onnx`` package."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    ports = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        ports.append(((value.name,), dims, ONNX_DTYPES.get(tensor.elem_type, "float32")))
    outputs = [(o.name,) for o in graph.output]
    return from_ports(ports, outputs, config=config, source=f"{model.name}")


def record_onnx(model: Path, output_dir: Path) -> Path | None:
    """Write ``kv_layout.json`` for ``model`` into ``output_dir`` (a backend's prepare_outputs
    hook). Graphs that are not KV-cache LMs, or no ``onnx`` package, leave no sidecar: the
    runtime then reads the graph at load and says what is wrong there."""
    if not model.is_file():
        return None
    try:
        layout = from_onnx(model, read_config(output_dir) or read_config(model.parent))
    except (ImportError, IncompatibleArtifact):
        return None
    return write_sidecar(output_dir, layout)
