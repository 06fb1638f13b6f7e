"""ONNX Runtime decoder step over an exported causal LM with KV cache.

The graph is the one ``optimum-cli export onnx --task text-generation-with-past`` writes (see
:mod:`rmbuild.runtime.kvlayout`). The feed/keep loop is :class:`rmbuild.runtime.kvloop.KVLoop`,
shared with the other runtimes; this module only runs one ``InferenceSession.run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmbuild.runtime import kvlayout
from rmbuild.runtime.kvloop import KVLoop

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def session_layout(session: Any, folder: Path) -> kvlayout.KVLayout:
    """The layout read from a loaded session's graph (artifacts without ``kv_layout.json``)."""
    ports = [
        ((i.name,), [d if isinstance(d, int) else None for d in i.shape], _DTYPES.get(i.type, ""))
        for i in session.get_inputs()
    ]
    outputs = [(o.name,) for o in session.get_outputs()]
    return kvlayout.from_ports(
        ports, outputs, config=kvlayout.read_config(folder), source="the ONNX graph"
    )


def session_threads(options: dict[str, Any]) -> int:
    """The session's intra-op threads: the profile's ``intra_op_threads`` if it sets one, else
    the count a server asks for (``serve_threads``: it leaves a core to its HTTP front end),
    else 0, ONNX Runtime's own default (every core)."""
    return int(options.get("intra_op_threads") or options.get("serve_threads") or 0)


class OnnxDecoderStep(KVLoop):
    """Holds an ``InferenceSession``; the KV cache lives in the shared loop."""

    def __init__(self, model_path: Path, options: dict[str, Any] | None = None) -> None:
        import onnxruntime as ort

        options = options or {}
        so = ort.SessionOptions()
        if threads := session_threads(options):
            so.intra_op_num_threads = threads
        providers = options.get("providers") or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(model_path), so, providers=providers)
        layout = kvlayout.read_sidecar(model_path.parent) or session_layout(
            self.session, model_path.parent
        )
        super().__init__(layout, what=model_path.name)
        self.output_names = ["logits", *self.present_names]
        self._run_fn = self.session.run

    gives_all_positions = True

    def _run_batch(
        self, feeds: dict[str, Any], all_positions: bool = False
    ) -> tuple[Any, list[Any]]:
        outputs = self._run_fn(self.output_names, feeds)
        return (outputs[0] if all_positions else outputs[0][:, -1]), outputs[1:]

    def close(self) -> None:
        self.closed = True
        self.session = None  # type: ignore[assignment]
        self._run_fn = None  # type: ignore[assignment]
