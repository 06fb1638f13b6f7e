"""STAND-IN for Rebellions' ``rebel`` module (rebel-compiler), for rmbuild's tests only.

rebel-compiler comes only from Rebellions' own index, so the tests put this module on the
PYTHONPATH of an RBLN test toolchain, under the real optimum-rbln from PyPI
(tests/backends/rbln/conftest.py builds that toolchain). It imitates the surface optimum-rbln
0.12 and rmbuild use (docs/toolchains.md, Rebellions paragraph), not the compiler:

* ``compile_from_torch(model, input_info, npu=, num_devices=, ...)`` checks its arguments the
  way the real one documents (a known SKU; no ``tensor_parallel_size`` beside
  ``num_devices``; input_info as (name, shape, dtype) triples) and returns an
  ``RBLNCompiledModel`` whose ``save(path)`` writes a small file with a recognisable header
  and the compile facts as JSON (never an executable program);
* ``device_count()``, ``npu_is_available(i)``, ``get_npu_name(i)`` report the devices the
  test asks for through ``STANDIN_REBEL_DEVICES`` (a count) and ``STANDIN_REBEL_NPU`` (SKU);
  none by default, like a CI host;
* ``Runtime(...)`` raises the way the real one does on a host without the device: the load
  path is tested up to that call;
* ``STANDIN_REBEL_COUNTER=FILE`` appends a line per compiled graph (counts compiles);
* ``STANDIN_REBEL_FAIL=TEXT`` makes compile print TEXT to stderr and raise, the way a licence
  or driver failure of the vendor's compiler looks from outside.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

__version__ = os.environ.get("STANDIN_REBEL_VERSION", "0.12.0")
STANDIN = True
MAGIC = b"RBLN-STANDIN\x00"
KNOWN_NPUS = ("RBLN-CA02", "RBLN-CA12", "RBLN-CA22", "RBLN-CA25", "RBLN-CR03")


class RBLNRuntimeError(RuntimeError):
    """What the real runtime raises when it cannot open a device."""


def _devices() -> int:
    return int(os.environ.get("STANDIN_REBEL_DEVICES", "0") or 0)


def device_count() -> int:
    """ATOM devices visible here (``STANDIN_REBEL_DEVICES``; 0 by default)."""
    return _devices()


def npu_is_available(device: int = 0) -> bool:
    return 0 <= int(device) < _devices()


def get_npu_name(device: int = 0) -> str | None:
    """The SKU of device ``device`` (``STANDIN_REBEL_NPU``), None where there is none."""
    if not npu_is_available(device):
        return None
    return os.environ.get("STANDIN_REBEL_NPU", "RBLN-CA25")


def _normalize_npu(npu: str) -> str:
    # "RBLN-CA25" and a form-factor suffix ("RBLN-CA25-xxx") are one SKU to the compiler.
    return "-".join(npu.split("-")[:2])


class RBLNCompiledModel:
    """A compiled graph: made by ``compile_from_torch``, or read back from a ``.rbln`` file."""

    def __init__(self, source: Any = None, *, facts: dict[str, Any] | None = None) -> None:
        if facts is not None:
            self.facts = dict(facts)
            return
        path = Path(source)
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            raise RBLNRuntimeError(f"{path}: not an RBLN compiled model")
        self.facts = json.loads(data[len(MAGIC) :])

    def save(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(MAGIC + json.dumps(self.facts, sort_keys=True).encode())

    # Memory queries optimum-rbln makes when it sizes the KV cache after compiling.
    def get_alloc_per_node_by_key(self) -> dict[str, list[int]]:
        return {"weights": [1 << 20] * int(self.facts.get("num_devices", 1))}

    def get_alloc_per_chiplet_by_key(self) -> dict[str, list[list[int]]]:
        return {"weights": [[1 << 20]] * int(self.facts.get("num_devices", 1))}

    def exp_get_dram_tensor_sizes(self) -> dict[str, list[list[int]]]:
        return {}

    def exp_multiply_buffer_size(self, *args: Any, **kwargs: Any) -> None:
        self.facts["buffer_multiplier"] = kwargs or list(args)

    def exp_rescale_buffer_size(self, *args: Any, **kwargs: Any) -> None:
        self.facts["buffer_rescale"] = kwargs or list(args)


def _input_info_facts(input_info: Any) -> list[list[Any]]:
    out = []
    for item in input_info or []:
        name, shape, dtype = item
        out.append([str(name), [int(s) for s in shape], str(dtype)])
    return out


def compile(  # noqa: A001 - the real module's name
    model: Any = None,
    *,
    input_info: Any = None,
    npu: str | None = None,
    num_devices: int = 1,
    **kwargs: Any,
) -> RBLNCompiledModel:
    """Validate the arguments as the compiler documents them, then "compile"."""
    if counter := os.environ.get("STANDIN_REBEL_COUNTER"):
        with open(counter, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    if failure := os.environ.get("STANDIN_REBEL_FAIL"):
        print(failure, file=sys.stderr, flush=True)
        raise RBLNRuntimeError(failure)
    if "tensor_parallel_size" in kwargs:
        raise TypeError(
            "compile() got an unexpected keyword argument 'tensor_parallel_size' "
            "(renamed num_devices)"
        )
    if npu is None:
        if not npu_is_available(0):
            raise RBLNRuntimeError(
                "no NPU found and no target given: pass npu= (e.g. 'RBLN-CA25') to compile "
                "without a device"
            )
        npu = get_npu_name(0)
    if _normalize_npu(npu) not in KNOWN_NPUS:
        raise ValueError(f"unknown npu {npu!r}; known: {', '.join(KNOWN_NPUS)}")
    if int(num_devices) < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    facts = {
        "standin": True,
        "compiler": "rebel-compiler (stand-in)",
        "version": __version__,
        "npu": npu,
        "num_devices": int(num_devices),
        "input_info": _input_info_facts(input_info),
        "model": type(model).__name__ if model is not None else None,
    }
    return RBLNCompiledModel(facts=facts)


def compile_from_torch(
    model: Any, input_info: Any, npu: str | None = None, num_devices: int = 1, **kwargs: Any
) -> RBLNCompiledModel:
    """``torch.nn.Module`` -> compiled model; the stand-in traces nothing."""
    kwargs.pop("example_inputs", None)
    kwargs.pop("compile_context", None)
    return compile(model, input_info=input_info, npu=npu, num_devices=num_devices, **kwargs)


class Runtime:
    """The device runtime: on a host without the device it fails, as the real one does."""

    def __init__(
        self, compiled_model: Any, tensor_type: str = "pt", device: Any = 0, **kwargs: Any
    ) -> None:
        devices = device if isinstance(device, list) else [device]
        for dev in devices:
            if not npu_is_available(int(dev)):
                raise RBLNRuntimeError(
                    f"failed to open RBLN device {dev}: no such device (device_count() = "
                    f"{device_count()})"
                )
        # A stand-in device never computes: the tests stop at this call.
        raise RBLNRuntimeError(
            "stand-in rebel: the device runtime is not imitated (tests stop at this call)"
        )


def _register_custom_ops() -> None:
    """rebel-compiler registers ``torch.ops.rbln_custom_ops.*``; optimum-rbln swaps
    ``torch.nn.functional.linear`` for ``rbln_custom_ops.linear`` while compiling. The stand-in
    registers that one (a plain linear) so the real optimum-rbln finds it; it traces nothing.
    Called when ``rebel.compile_context`` is imported (optimum-rbln's decoder modules import
    it after torch), not on ``import rebel``: a device query stays free of torch's start-up."""
    try:
        import torch
    except ImportError:  # the optimum-rbln stand-in runs without torch
        return
    if hasattr(torch.ops, "rbln_custom_ops") and hasattr(torch.ops.rbln_custom_ops, "linear"):
        return

    # Defined through a schema string: this module's annotations are strings (PEP 563).
    global _LIB
    _LIB = torch.library.Library("rbln_custom_ops", "FRAGMENT")
    _LIB.define("linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor")
    _LIB.impl("linear", torch.nn.functional.linear, "CompositeExplicitAutograd")


_LIB: Any = None
