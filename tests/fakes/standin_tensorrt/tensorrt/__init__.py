"""STAND-IN for NVIDIA's ``tensorrt`` Python module, for rmbuild's tests only.

The surface rmbuild's runtime uses, as TensorRT 10's Python API documents it:
``Logger``, ``ILogger`` (subclassed, ``log(severity, msg)``), ``Runtime(logger)
.deserialize_cuda_engine(bytes)`` (None, with the error logged, for a plan of another version:
"The engine plan file is not compatible with this version of TensorRT"),
``Runtime.engine_host_code_allowed`` (False by default; a plan built ``--versionCompatible``
embeds the lean runtime, which TensorRT loads only when it is True, and such a plan loads on a
later TensorRT as NVIDIA's version-compatibility rules allow), ``ICudaEngine.num_io_tensors /
get_tensor_name / get_tensor_mode /
get_tensor_dtype / create_execution_context``, ``IExecutionContext.set_input_shape`` (False
outside the optimization profile), ``set_tensor_address``, ``get_tensor_shape`` and
``execute_async_v3`` (the device call: recorded in :data:`CALLS`, computes nothing).
It reads the plans tests/fakes/standin_trtexec.py writes. ``__version__`` comes from
``STANDIN_TENSORRT_VERSION`` (default 10.13.0.35).
"""

from __future__ import annotations

import enum
import json
import os
import struct
from typing import Any

__version__ = os.environ.get("STANDIN_TENSORRT_VERSION", "10.13.0.35")
STANDIN = True
CALLS: list[tuple[str, Any]] = []  # every call the tests may inspect
MAGIC = 0x74727466


class ILogger:
    """The logger interface applications subclass (``log(severity, msg)``)."""

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        raise NotImplementedError


class Logger(ILogger):
    ERROR, WARNING, INFO, VERBOSE = (
        ILogger.Severity.ERROR,
        ILogger.Severity.WARNING,
        ILogger.Severity.INFO,
        ILogger.Severity.VERBOSE,
    )

    def __init__(self, severity: int = 2) -> None:
        super().__init__()
        self.severity = severity
        self.messages: list[str] = []

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        self.messages.append(msg)


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    INT64 = 10
    BF16 = 7


_NP = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64"}


def nptype(dtype: DataType) -> Any:
    import numpy as np

    return np.dtype(_NP[dtype.name]).type


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3])


def _version_compatible_loads(built: tuple[int, ...], here: tuple[int, ...]) -> bool:
    # NVIDIA's documented rules (the version-compatibility page of the TensorRT developer
    # guide and the 11.x support matrix), written here independently of rmbuild's copy.
    if built[:2] < (8, 6) or here[:2] < (8, 6):
        return False
    if built[0] == here[0]:
        return here >= built
    return (built[0], here[0]) in {(8, 9), (8, 10), (9, 10), (10, 11)}


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
        CALLS.append(("deserialize_cuda_engine", len(data)))
        error = ILogger.Severity.ERROR
        if len(data) < 28 or struct.unpack_from("<I", data, 0)[0] != MAGIC:
            self.logger.log(error, "Serialization assertion magicTagRead == kMAGIC_TAG")
            return None
        built = tuple(data[24:27])
        payload = json.loads(data[28:])
        here = _numbers(__version__)
        if payload.get("version_compatible"):
            # The plan embeds the lean runtime: host code TensorRT runs only when allowed.
            if not self.engine_host_code_allowed:
                self.logger.log(
                    error,
                    "(stand-in) the plan carries a lean runtime (built version-compatible) and "
                    "engine host code is not allowed: set engine_host_code_allowed = True for "
                    "trusted plans",
                )
                return None
            compatible = _version_compatible_loads(built, here)
        else:
            compatible = built == here
        if not compatible:
            self.logger.log(
                error,
                "The engine plan file is not compatible with this version of TensorRT, "
                f"expecting library version {__version__} got "
                f"{'.'.join(str(b) for b in built)}, please rebuild.",
            )
            return None
        CALLS.append(("engine_host_code_allowed", self.engine_host_code_allowed))
        return ICudaEngine(payload)


class ICudaEngine:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.inputs = {i["name"]: i for i in payload["inputs"]}
        presents = [
            "present." + name[len("past_key_values.") :]
            for name in self.inputs
            if name.startswith("past_key_values.")
        ]
        self.names = [*self.inputs, "logits", *presents]

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        if name in self.inputs:
            return DataType[self.inputs[name]["trt_dtype"]]
        if name == "logits":
            return DataType.FLOAT
        return DataType[self.inputs["past_key_values." + name[len("present.") :]]["trt_dtype"]]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        """[min, opt, max] of an input's shape in optimization profile ``profile_index``."""
        profile = self.inputs[name].get("profile")
        if profile is None or profile_index != 0:
            raise RuntimeError(f"no optimization profile {profile_index} for {name}")
        top = tuple(profile["max"])
        return [tuple(profile["min"]), tuple(profile.get("opt", top)), top]

    def create_execution_context(self) -> IExecutionContext:
        CALLS.append(("create_execution_context", None))
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        CALLS.append(("set_input_shape", (name, tuple(shape))))
        spec = self.engine.inputs[name]
        profile = spec.get("profile")
        if profile is not None:
            lo, hi = profile["min"], profile["max"]
            if len(shape) != len(lo) or any(
                not a <= d <= b for a, d, b in zip(lo, shape, hi, strict=False)
            ):
                return False  # as TensorRT does: outside the optimization profile
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        CALLS.append(("set_tensor_address", name))
        self.addresses[name] = ptr
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine.inputs:
            return self.shapes[name]
        batch, seq = self.shapes["input_ids"]
        if name == "logits":
            return (batch, seq, int(self.engine.payload["vocab_size"]))
        past = self.shapes["past_key_values." + name[len("present.") :]]
        return (past[0], past[1], past[2] + seq, past[3])

    def execute_async_v3(self, stream_handle: int) -> bool:
        # The device call: a real engine runs its kernels here. The stand-in checks that every
        # tensor has an address and records the call.
        missing = [n for n in self.engine.names if n not in self.addresses]
        CALLS.append(("execute_async_v3", {"stream": stream_handle, "missing": missing}))
        return not missing
