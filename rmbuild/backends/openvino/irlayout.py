"""The KV layout of an OpenVINO IR, read from its ``.xml`` (stdlib only; no library needed).

``ovc`` keeps the ONNX export's tensor names, but a port can carry several (bloom's mask is
both ``/transformer/Cast_2_output_0`` and ``attention_mask``) and the C API only offers "any"
one of them (it has no ``ov_port_get_names``). The IR lists every name of a port, so the layout
is read here, at build time (``OpenVINOBackend.prepare_outputs`` writes ``kv_layout.json``) and,
for artifacts without that sidecar, at load.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from rmbuild.runtime import kvlayout

_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "bf16": "bfloat16",
           "i64": "int64", "i32": "int32"}  # fmt: skip


def port_names(text: str | None) -> tuple[str, ...]:
    """The ``names`` attribute of an IR port: comma-separated, a literal comma escaped ``\\,``."""
    if not text:
        return ()
    return tuple(n.replace("\\,", ",") for n in re.split(r"(?<!\\),", text) if n)


def _dims(shape: str | None) -> list[int | None]:
    dims: list[int | None] = []
    for piece in (shape or "").split(","):
        piece = piece.strip()
        if piece:
            dims.append(int(piece) if piece.lstrip("-").isdigit() and int(piece) >= 0 else None)
    return dims


def read(xml_path: Path) -> kvlayout.KVLayout:
    """The layout of the IR at ``xml_path`` (IncompatibleArtifact if it is no KV-cache LM)."""
    root = ET.parse(xml_path).getroot()
    layers = {layer.get("id"): layer for layer in root.iter("layer")}
    ports = []
    results: list[str | None] = []
    for layer_id, layer in layers.items():
        kind = layer.get("type")
        if kind == "Parameter":
            data = layer.find("data")
            port = layer.find("output/port")
            names = port_names(port.get("names") if port is not None else None)
            dtype = _DTYPES.get((data.get("element_type") if data is not None else "") or "", "")
            shape = _dims(data.get("shape") if data is not None else None)
            ports.append((names or (layer.get("name") or "",), shape, dtype))
        elif kind == "Result":
            results.append(layer_id)
    # A Result's tensor names are those of the port that feeds it.
    feeding: dict[str, tuple[str, str]] = {}
    for edge in root.iter("edge"):
        feeding[edge.get("to-layer") or ""] = (
            edge.get("from-layer") or "",
            edge.get("from-port") or "",
        )
    outputs = []
    for result in results:
        src_layer, src_port = feeding.get(result or "", ("", ""))
        names: tuple[str, ...] = ()
        layer = layers.get(src_layer)
        if layer is not None:
            for port in layer.iterfind("output/port"):
                if port.get("id") == src_port:
                    names = port_names(port.get("names"))
        outputs.append(names or ("",))
    config = kvlayout.read_config(xml_path.parent)
    return kvlayout.from_ports(ports, outputs, config=config, source=xml_path.name)


def record(xml_path: Path, output_dir: Path) -> Path | None:
    """Write ``kv_layout.json`` for the IR (no sidecar if it is no KV-cache LM)."""
    if not xml_path.is_file():
        return None
    try:
        layout = read(xml_path)
    except (kvlayout.IncompatibleArtifact, ET.ParseError):
        return None
    return kvlayout.write_sidecar(output_dir, layout)
