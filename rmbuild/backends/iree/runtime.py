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
records the ONNX graph's KV layout (names in order, KV heads, head dim, dtype) in
``kv_layout.json`` (see ``IREEBackend.prepare_outputs``; :mod:`rmbuild.runtime.kvlayout`), which
the compile stages keep; it takes precedence over ``io.json`` (names only) and over the
convention, which GPT-2's export (past before attention_mask) does not follow. Only artifacts
built before the sidecar existed fall back to ``io.json`` and config.json.

A zero-length past (``[1, kv_heads, 0, head_dim]``) works on IREE's local (CPU) devices: the
dims are dynamic in the module. On ``cuda`` it does not (IREE 3.13, seen on an H200): importing a
0-byte host buffer fails (``cuMemHostRegister``: CUDA_ERROR_INVALID_VALUE) and the module's own
zero-size ``queue.alloca``/``dealloca`` fail with INVALID_ARGUMENT. The workaround there is one
padding slot, as in left padding: the cache starts as ``[1, kv_heads, 1, head_dim]`` of zeros and
the attention mask holds a 0 for it on every step, so attention never sees it (its score gets the
mask's large negative bias) and position ids still count from 0. ``pad_past`` (option) sets the
number of slots: 0 by default on local drivers, 1 elsewhere.
The present tensors stay on the device (``DeviceArray``) and are fed back as the next past.
The feed/keep loop is :class:`rmbuild.runtime.kvloop.KVLoop`, shared with the other runtimes:
an argument the module refuses is reported as it is, naming the input and the expected and
given shapes (exit 6), never retried with another dtype.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from rmbuild.errors import ArtifactInputMismatch
from rmbuild.runtime import kvlayout
from rmbuild.runtime.kvloop import KVLoop
from rmbuild.runtime.session import read_json

_FUNCTION = "main_graph"
# hal.buffer_view.assert's words for an argument the module does not take.
_SHAPE_MISMATCH = re.compile(r"expected shape `([^`]*)`, actual shape `([^`]*)`")
_TYPE_MISMATCH = re.compile(r"element type mismatch; expected (\w+) .*? but have (\w+)")
_IREE_TYPES = {"float32": "f32", "float16": "f16", "float64": "f64", "int64": "i64", "int32": "i32"}


class IREEDecoderStep(KVLoop):
    """Holds an IREE context with the loaded module; the KV cache lives in the shared loop."""

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
        layout = kvlayout.read_sidecar(vmfb_path.parent) or _fallback_layout(
            vmfb_path.parent, n_in, n_out, options.get("kv_dtype")
        )
        _check_arity(layout, n_in, n_out)
        self.output_names = list(layout.outputs)
        local = (device or driver).startswith("local")
        pad = options.get("pad_past")
        super().__init__(
            layout, pad=int(pad) if pad is not None else (0 if local else 1), what=vmfb_path.name
        )

    gives_all_positions = True

    def _run_batch(
        self, feeds: dict[str, Any], all_positions: bool = False
    ) -> tuple[Any, list[Any]]:
        outputs = self._fn(*[feeds[name] for name in self.input_names])
        if not isinstance(outputs, tuple | list):
            outputs = (outputs,)
        if len(outputs) != len(self.output_names):
            raise RuntimeError(
                f"{_FUNCTION} returned {len(outputs)} values, expected {len(self.output_names)}"
            )
        logits, presents = outputs[0], list(outputs[1:])
        if not self._presents_checked:
            # Once per sequence, like the feeds: the output order does not change between steps,
            # and a per-step check costs a measurable share of a tiny model's step.
            total = int(feeds["attention_mask"].shape[1])
            for value in presents:
                shape = tuple(value.shape)
                if len(shape) != 4 or shape[2] != total:
                    raise RuntimeError(
                        f"present KV has shape {shape}; expected [batch, kv_heads, {total}, "
                        "head_dim] (the module's outputs are not in the exporter's order)"
                    )
            self._presents_checked = True
        host = logits.to_host() if hasattr(logits, "to_host") else np.asarray(logits)
        return np.array(host if all_positions else host[:, -1], dtype=np.float32), presents

    def reset(self) -> None:
        """Forget the KV cache; the next step checks the module's outputs again."""
        super().reset()
        self._presents_checked = False

    def _refusal(self, exc: Exception, feeds: dict[str, Any]) -> ArtifactInputMismatch | None:
        # The module checks its arguments (hal.buffer_view.assert) and says what it expected,
        # not which argument: find it by what was given (no retry with fp16).
        text = str(exc)
        shapes = _SHAPE_MISMATCH.search(text)
        types = _TYPE_MISMATCH.search(text)
        if shapes is None and types is None:
            return None
        given_shapes = {n: "x".join(map(str, v.shape)) for n, v in feeds.items()}
        given_types = {n: _IREE_TYPES.get(str(v.dtype), str(v.dtype)) for n, v in feeds.items()}
        if shapes is not None:
            expected, given = shapes.group(1), shapes.group(2)
            names = [n for n in self.input_names if given_shapes.get(n) == given]
        else:
            expected, given = types.group(1), types.group(2)  # type: ignore[union-attr]
            names = [n for n in self.input_names if given_types.get(n) == given]
        name = names[0] if names else "?"
        return self.mismatch(
            name, expected, given, [f"the runtime said: {text.strip().splitlines()[0][:300]}"]
        )

    def close(self) -> None:
        self.closed = True
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


def _check_arity(layout: kvlayout.KVLayout, n_in: int | None, n_out: int | None) -> None:
    inputs, outputs = layout.input_names, layout.outputs
    if n_in is not None and n_in != len(inputs):
        raise ValueError(
            f"the module's {_FUNCTION} takes {n_in} arguments; a KV-cache export "
            f"of this config takes {len(inputs)} ({', '.join(inputs)})"
        )
    if n_out is not None and n_out != len(outputs):
        raise ValueError(
            f"the module's {_FUNCTION} returns {n_out} values; expected {len(outputs)}"
        )


def _fallback_layout(
    folder: Path, n_in: int | None, n_out: int | None, kv_dtype: Any = None
) -> kvlayout.KVLayout:
    """The layout of an artifact built without ``kv_layout.json``: names from io.json (or the
    exporter's convention), head counts from config.json, the cache dtype from ``kv_dtype``."""
    config = read_json(folder / "config.json")
    sidecar = read_json(folder / "io.json")
    if sidecar.get("inputs") and sidecar.get("outputs"):
        inputs, outputs = list(sidecar["inputs"]), list(sidecar["outputs"])
        source = "io.json and config.json"
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
        outputs = ["logits"] + [kvlayout.present_name(p) for p in past]
        source = "the exporter's convention and config.json"
    dtype = str(np.dtype(kv_dtype or "float32"))
    ports = [
        ((n,), [None, None, None, None], dtype)
        if n.startswith(kvlayout.PAST_PREFIX)
        else ((n,), [None, None], "int64")
        for n in inputs
    ]
    return kvlayout.from_ports(ports, [(n,) for n in outputs], config=config, source=source)
