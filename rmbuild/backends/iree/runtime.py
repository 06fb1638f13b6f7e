"""IREE decoder step: a KV-cache causal LM compiled to ``.vmfb``, run through ``iree.runtime``.

The module comes from ``iree-import-onnx`` + ``iree-compile`` on the graph
``optimum-cli export onnx --task text-generation-with-past`` writes, so it has the ONNX graph's
contract (see ``rmbuild/backends/onnxruntime/runtime.py``) but **no names**: IREE functions take
their arguments positionally, and neither the imported MLIR (the importer attaches the ONNX names
only as debug locations, which it does not print) nor the .vmfb (its function reflection is
empty for ONNX imports) keeps them. The order is the ONNX graph's input order, which the importer
preserves exactly (``onnx_importer.py`` builds the function from ``graph.input`` minus
initializers), and which the exporter fixes as::

    input_ids, attention_mask, [position_ids], past_key_values.0.key, past_key_values.0.value, ...
    -> logits, present.0.key, present.0.value, ...

So the step reads the function's arity from the module (``main_graph(0rrrrrrr_rrrrr)``: 7 in,
5 out), checks it against ``num_hidden_layers`` in config.json (whether ``position_ids`` is
there follows from the count), and checks the output shapes on every call. The import stage
writes an ``io.json`` sidecar (``{"inputs": [...], "outputs": [...]}``, the ONNX names in order;
see ``IREEBackend.prepare_outputs``) that the compile stages carry; it takes precedence over the
convention, which GPT-2's export (past before attention_mask) does not follow.

A zero-length past (``[1, kv_heads, 0, head_dim]``) works on IREE's local (CPU) devices: the
dims are dynamic in the module. On ``cuda`` it does not (IREE 3.13, seen on an H200): importing a
0-byte host buffer fails (``cuMemHostRegister``: CUDA_ERROR_INVALID_VALUE) and the module's own
zero-size ``queue.alloca``/``dealloca`` fail with INVALID_ARGUMENT. The workaround there is one
padding slot, as in left padding: the cache starts as ``[1, kv_heads, 1, head_dim]`` of zeros and
the attention mask holds a 0 for it on every step, so attention never sees it (its score gets the
mask's large negative bias) and position ids still count from 0. ``pad_past`` (option) sets the
number of slots: 0 by default on local drivers, 1 elsewhere.
The present tensors stay on the device (``DeviceArray``) and are fed back as the next past.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from rmbuild.runtime.session import kv_cache_shape, read_json

_FUNCTION = "main_graph"


class IREEDecoderStep:
    """Holds an IREE context with the loaded module and the KV cache between steps."""

    def __init__(
        self,
        vmfb_path: Path,
        *,
        driver: str = "local-task",
        device: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        import iree.runtime as rt

        options = options or {}
        self.config = rt.Config(device=rt.get_device(device)) if device else rt.Config(driver)
        self.context = rt.SystemContext(config=self.config)
        self.module = rt.VmModule.mmap(self.config.vm_instance, str(vmfb_path))
        self.context.add_vm_module(self.module)
        name = str(options.get("function") or _pick_function(self.module.function_names))
        self._fn = self.context.modules[self.module.name][name]
        n_in, n_out = _arity(self.module.lookup_function(name))

        folder = vmfb_path.parent
        config = read_json(folder / "config.json")
        self.input_names, self.output_names = _io_names(folder, config, n_in, n_out)
        self.past_names = [n for n in self.input_names if n.startswith("past_key_values.")]
        self._kv_shape = kv_cache_shape(config)
        self._kv_dtype = np.dtype(options.get("kv_dtype") or "float32")
        local = (device or driver).startswith("local")
        pad = options.get("pad_past")
        self.pad = int(pad) if pad is not None else (0 if local else 1)
        self.reset()

    def reset(self) -> None:
        batch, heads, _, head_dim = self._kv_shape
        empty = np.zeros((batch, heads, self.pad, head_dim), dtype=self._kv_dtype)
        self.past: list[Any] = [empty] * len(self.past_names)
        self.length = 0

    def _feeds(self, token_ids: np.ndarray, total: int) -> list[Any]:
        n = int(token_ids.shape[0])
        values = {
            "input_ids": np.ascontiguousarray(token_ids, dtype=np.int64).reshape(1, n),
            "attention_mask": np.concatenate(
                [np.zeros((1, self.pad), dtype=np.int64), np.ones((1, total), dtype=np.int64)],
                axis=1,
            ),
            "position_ids": np.arange(self.length, total, dtype=np.int64).reshape(1, n),
            **dict(zip(self.past_names, self.past, strict=True)),
        }
        return [values[name] for name in self.input_names]

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        n = int(token_ids.shape[0])
        total = self.length + n
        try:
            outputs = self._fn(*self._feeds(token_ids, total))
        except (ValueError, RuntimeError):
            # An fp16 export takes an fp16 cache; the module says so only by refusing f32.
            if self.length or self._kv_dtype == np.float16:
                raise
            self._kv_dtype = np.dtype(np.float16)
            self.reset()
            outputs = self._fn(*self._feeds(token_ids, total))
        if not isinstance(outputs, tuple | list):
            outputs = (outputs,)
        if len(outputs) != len(self.output_names):
            raise RuntimeError(
                f"{_FUNCTION} returned {len(outputs)} values, expected {len(self.output_names)}"
            )
        logits, presents = outputs[0], list(outputs[1:])
        for value in presents:
            shape = tuple(value.shape)
            if len(shape) != 4 or shape[2] != total + self.pad:
                raise RuntimeError(
                    f"present KV has shape {shape}; expected "
                    f"[1, kv_heads, {total + self.pad}, head_dim] "
                    "(the module's outputs are not in the exporter's order)"
                )
        self.past = presents
        self.length = total
        host = logits.to_host() if hasattr(logits, "to_host") else np.asarray(logits)
        return np.array(host[0, -1], dtype=np.float32)

    def close(self) -> None:
        self.past = []
        self._fn = None  # type: ignore[assignment]
        self.context = None  # type: ignore[assignment]
        self.module = None  # type: ignore[assignment]


def _pick_function(names: list[str]) -> str:
    if _FUNCTION in names:
        return _FUNCTION
    public = [n for n in names if not n.startswith("__") and not n.endswith("$async")]
    if len(public) == 1:
        return public[0]
    raise ValueError(f"cannot tell which function to call among {names}; set option 'function'")


def _arity(function: Any) -> tuple[int | None, int | None]:
    """Argument and result counts from the VM calling convention, e.g. ``(0rrrrrrr_rrrrr)``."""
    match = re.search(r"\(0?([a-zA-Z]*)_([a-zA-Z]*)\)", repr(function))
    if match is None:
        return None, None
    return len(match.group(1)), len(match.group(2))


def _io_names(
    folder: Path, config: dict[str, Any], n_in: int | None, n_out: int | None
) -> tuple[list[str], list[str]]:
    sidecar = read_json(folder / "io.json")
    if sidecar.get("inputs") and sidecar.get("outputs"):
        inputs, outputs = list(sidecar["inputs"]), list(sidecar["outputs"])
    else:
        layers = config.get("num_hidden_layers") or config.get("n_layer")
        if not layers:
            raise ValueError(
                "config.json does not say num_hidden_layers: cannot order the "
                "module's KV-cache arguments"
            )
        past = [
            f"past_key_values.{i}.{kind}" for i in range(int(layers)) for kind in ("key", "value")
        ]
        leading = ["input_ids", "attention_mask"]
        if n_in is not None and n_in - len(past) == 3:
            leading.append("position_ids")
        inputs = leading + past
        outputs = ["logits"] + [p.replace("past_key_values.", "present.") for p in past]
    if n_in is not None and n_in != len(inputs):
        raise ValueError(
            f"the module's {_FUNCTION} takes {n_in} arguments; a KV-cache export "
            f"of this config takes {len(inputs)} ({', '.join(inputs)})"
        )
    if n_out is not None and n_out != len(outputs):
        raise ValueError(
            f"the module's {_FUNCTION} returns {n_out} values; expected {len(outputs)}"
        )
    unknown = (
        set(inputs)
        - {"input_ids", "attention_mask", "position_ids"}
        - {n for n in inputs if n.startswith("past_key_values.")}
    )
    if unknown:
        raise ValueError(f"cannot feed the module's inputs {sorted(unknown)}")
    return inputs, outputs
