"""ONNX Runtime decoder step over an exported causal LM with KV cache.

The graph is the one ``optimum-cli export onnx --task text-generation-with-past`` writes:
inputs ``input_ids``, ``attention_mask``, optional ``position_ids`` and
``past_key_values.<i>.key|value`` ([batch, kv_heads, past_len, head_dim]); outputs ``logits``
and ``present.<i>.key|value``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rmbuild.runtime.session import kv_cache_shape, read_json

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxDecoderStep:
    """Holds an ``InferenceSession`` and the KV cache between steps."""

    def __init__(self, model_path: Path, options: dict[str, Any] | None = None) -> None:
        import onnxruntime as ort

        options = options or {}
        so = ort.SessionOptions()
        if threads := int(options.get("intra_op_threads") or 0):
            so.intra_op_num_threads = threads
        providers = options.get("providers") or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(model_path), so, providers=providers)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.input_names = set(inputs)
        self.past_names = sorted(n for n in inputs if n.startswith("past_key_values."))
        self.output_names = ["logits"] + [
            n.replace("past_key_values.", "present.") for n in self.past_names
        ]
        missing = {"input_ids", "attention_mask"} - self.input_names
        if missing:
            raise ValueError(f"{model_path} is not a KV-cache LM export: missing {missing}")
        self._past_shapes = {}
        self._past_dtypes = {}
        config = read_json(model_path.parent / "config.json")
        for name in self.past_names:
            meta = inputs[name]
            self._past_dtypes[name] = _DTYPES.get(meta.type, np.float32)
            static = [d if isinstance(d, int) else None for d in meta.shape]
            self._past_shapes[name] = kv_cache_shape(config, static[1], static[3])
        self.reset()

    def reset(self) -> None:
        self.past = {
            name: np.zeros(shape, dtype=self._past_dtypes[name])
            for name, shape in self._past_shapes.items()
        }
        self.length = 0

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        n = int(token_ids.shape[0])
        total = self.length + n
        feeds: dict[str, np.ndarray] = {
            "input_ids": token_ids.reshape(1, n),
            "attention_mask": np.ones((1, total), dtype=np.int64),
            **self.past,
        }
        if "position_ids" in self.input_names:
            feeds["position_ids"] = np.arange(self.length, total, dtype=np.int64).reshape(1, n)
        outputs = self.session.run(self.output_names, feeds)
        for name, value in zip(self.past_names, outputs[1:], strict=True):
            self.past[name] = value
        self.length = total
        return outputs[0][0, -1]

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
