"""A typed ctypes binding to the VN runtime's C API (``libvnpu.so``, header ``vnpu.h``).

The runtime is a closed binary: this module never compiles against it. It declares, from the
header, every function it calls (:data:`SIGNATURES`: return type, argument types) and the
structs and status codes, loads the library with ctypes, and checks the library's ABI version
against the header's before any other call (a runtime built from another header would read
the structs differently).

Ownership: :class:`Model` and :class:`Context` each own one C handle, freed once by
``close()`` (idempotent; also on garbage collection, as a safety net). A context keeps a
reference to its model, so the model cannot be freed under a live context, which the header
forbids. A closed object raises :class:`VnpuClosed` instead of passing a dangling pointer.

Errors: every call returning ``vnpu_status`` goes through :meth:`Library.call`, which raises
:class:`VnpuError` with the function, the status name and ``vnpu_last_error()`` read right
after the failing call (the message is thread-local and replaced by the next call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from pathlib import Path
from typing import Any

ABI_VERSION = 1  # VNPU_ABI_VERSION of the header this binding was written from
ENV_VAR = "VNPU_LIBRARY"  # an explicit libvnpu.so to load

# vnpu_status, from vnpu.h.
STATUS_NAMES = {
    0: "VNPU_OK",
    1: "VNPU_ERR_ARGUMENT",
    2: "VNPU_ERR_IO",
    3: "VNPU_ERR_FORMAT",
    4: "VNPU_ERR_DEVICE",
    5: "VNPU_ERR_CAPACITY",
    6: "VNPU_ERR_MEMORY",
}
ERR_FORMAT, ERR_DEVICE, ERR_CAPACITY = 3, 4, 5


class ModelInfo(ctypes.Structure):
    """``vnpu_model_info``."""

    _fields_ = [
        ("vocab_size", ctypes.c_uint32),
        ("hidden_size", ctypes.c_uint32),
        ("num_layers", ctypes.c_uint32),
        ("num_heads", ctypes.c_uint32),
        ("num_kv_heads", ctypes.c_uint32),
        ("head_dim", ctypes.c_uint32),
        ("max_seq", ctypes.c_uint32),
        ("sku", ctypes.c_char * 16),
    ]


_status = ctypes.c_int  # an enum: int-sized
_handle = ctypes.c_void_p
_out = ctypes.POINTER(ctypes.c_void_p)

# name -> (restype, argtypes), one per function of vnpu.h this binding calls.
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "vnpu_abi_version": (ctypes.c_int, []),
    "vnpu_version": (ctypes.c_char_p, []),
    "vnpu_status_name": (ctypes.c_char_p, [_status]),
    "vnpu_last_error": (ctypes.c_char_p, []),
    "vnpu_device_count": (ctypes.c_int, []),
    "vnpu_device_sku": (_status, [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]),
    "vnpu_model_load": (_status, [ctypes.c_char_p, ctypes.c_int, _out]),
    "vnpu_model_free": (None, [_handle]),
    "vnpu_model_get_info": (_status, [_handle, ctypes.POINTER(ModelInfo)]),
    "vnpu_context_create": (_status, [_handle, _out]),
    "vnpu_context_free": (None, [_handle]),
    "vnpu_context_reset": (_status, [_handle]),
    "vnpu_context_length": (ctypes.c_uint32, [_handle]),
    "vnpu_context_step": (
        _status,
        [
            _handle,
            ctypes.POINTER(ctypes.c_int64),
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_float),
            ctypes.c_size_t,
        ],
    ),  # fmt: skip
}


class VnpuError(Exception):
    """A C call returned a status other than VNPU_OK (or the library cannot be used)."""

    def __init__(self, message: str, *, function: str = "", status: int = -1) -> None:
        super().__init__(message)
        self.function = function
        self.status = status


class VnpuLibraryNotFound(VnpuError):
    """``libvnpu.so`` is not where it was looked for; ``searched`` lists the places."""

    def __init__(self, message: str, searched: list[str]) -> None:
        super().__init__(message)
        self.searched = searched


class VnpuClosed(VnpuError):
    """A handle was used after ``close()``."""


def candidates() -> list[Path]:
    """Where ``libvnpu.so`` is looked for, in order: ``$VNPU_LIBRARY``, the lib/ folder of
    the environment rmbuild runs in (where the SDK is installed next to vnpuc), the system's
    library path."""
    places = []
    if env := os.environ.get(ENV_VAR):
        places.append(Path(env).expanduser())
    places.append(Path(sys.prefix) / "lib" / "libvnpu.so")
    if found := ctypes.util.find_library("vnpu"):
        places.append(Path(found))
    return places


def find_library() -> Path:
    """The first candidate that exists, or VnpuLibraryNotFound listing them all."""
    places = candidates()
    for place in places:
        if place.is_file():
            return place
    raise VnpuLibraryNotFound(
        f"libvnpu.so not found (searched: {', '.join(map(str, places))})",
        [str(p) for p in places],
    )


class Library:
    """The loaded runtime with every function of :data:`SIGNATURES` declared."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or find_library()
        try:
            lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise VnpuLibraryNotFound(f"cannot load {self.path}: {exc}", [str(self.path)]) from exc
        self._fn: dict[str, Any] = {}
        missing = []
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                function = getattr(lib, name)
            except AttributeError:
                missing.append(name)
                continue
            function.restype, function.argtypes = restype, argtypes
            self._fn[name] = function
        if missing:
            raise VnpuError(f"{self.path} does not export {', '.join(missing)}: not libvnpu?")
        abi = self._fn["vnpu_abi_version"]()
        if abi != ABI_VERSION:
            raise VnpuError(
                f"{self.path} has ABI version {abi}; this plugin was written for {ABI_VERSION} "
                "(install the matching SDK or plugin)"
            )
        self.version = self._fn["vnpu_version"]().decode()

    def call(self, name: str, *args: Any) -> None:
        """Call a ``vnpu_status`` function; VnpuError with the library's message if not OK."""
        status = int(self._fn[name](*args))
        if status != 0:
            detail = (self._fn["vnpu_last_error"]() or b"").decode("utf-8", "replace")
            label = STATUS_NAMES.get(status, f"status {status}")
            raise VnpuError(f"{name} failed with {label}: {detail}", function=name, status=status)

    def fn(self, name: str) -> Any:
        return self._fn[name]

    def devices(self) -> list[str]:
        """The SKU of each device present, by index."""
        skus = []
        for index in range(self._fn["vnpu_device_count"]()):
            buf = ctypes.create_string_buffer(16)
            self.call("vnpu_device_sku", index, buf, len(buf))
            skus.append(buf.value.decode())
        return skus


_LOADED: Library | None = None
_LOCK = threading.Lock()


def load() -> Library:
    """The process-wide Library (loaded once: a C library cannot be unloaded safely)."""
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            _LOADED = Library()
        return _LOADED


class Model:
    """A blob loaded on a device (``vnpu_model_load`` / ``vnpu_model_free``)."""

    def __init__(self, lib: Library, path: Path, device: int) -> None:
        self._handle: int | None = None  # until the load succeeds (``__del__`` reads it)
        self.lib = lib
        handle = ctypes.c_void_p()
        lib.call("vnpu_model_load", os.fsencode(path), device, ctypes.byref(handle))
        self._handle = handle.value
        info = ModelInfo()
        lib.call("vnpu_model_get_info", self._handle, ctypes.byref(info))
        self.info = info

    @property
    def handle(self) -> int:
        if self._handle is None:
            raise VnpuClosed("the model is closed")
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self.lib.fn("vnpu_model_free")(handle)

    def __del__(self) -> None:
        self.close()


class Context:
    """One sequence on the device: its KV cache and position."""

    def __init__(self, model: Model) -> None:
        self._handle: int | None = None
        self.model = model  # keeps the model alive while the context lives
        self.lib = model.lib
        handle = ctypes.c_void_p()
        self.lib.call("vnpu_context_create", model.handle, ctypes.byref(handle))
        self._handle = handle.value
        self._logits = (ctypes.c_float * model.info.vocab_size)()

    @property
    def handle(self) -> int:
        if self._handle is None:
            raise VnpuClosed("the context is closed")
        return self._handle

    def reset(self) -> None:
        self.lib.call("vnpu_context_reset", self.handle)

    def __len__(self) -> int:
        return int(self.lib.fn("vnpu_context_length")(self.handle))

    def step(self, tokens: list[int]) -> Any:
        """Feed ``tokens``; the last position's logits as a ctypes float array (reused)."""
        array = (ctypes.c_int64 * len(tokens))(*tokens)
        self.lib.call(
            "vnpu_context_step",
            self.handle,
            array,
            len(tokens),
            self._logits,
            len(self._logits),
        )
        return self._logits

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self.lib.fn("vnpu_context_free")(handle)

    def __del__(self) -> None:
        self.close()
