"""A small, typed ctypes binding to OpenVINO's C API (``libopenvino_c``).

rmbuild treats vendor runtimes as black boxes reached through their C libraries, so this module
never imports the ``openvino`` Python package: it only *locates* the wheel's ``libs/`` folder
(``importlib.util.find_spec``, which does not execute the package) and loads the C library with
:mod:`ctypes`. Top-level imports are stdlib + numpy only.

Ownership model
    Every C handle is owned by exactly one Python object (:class:`Core`, :class:`Model`,
    :class:`CompiledModel`, :class:`InferRequest`). ``close()`` frees it once and is idempotent;
    the objects are context managers; ``__del__`` is only a safety net. Transient handles (ports,
    tensors, shapes, strings) are freed in ``finally`` blocks inside the call that made them, so no
    error path leaks. A child keeps a Python reference to its parent so the garbage collector
    cannot free a core under a live model (the C++ objects are reference counted too, so closing a
    parent explicitly while a child lives is also safe). Using a closed object raises
    :class:`OVClosedError` instead of handing a dangling pointer to C.

Pitfalls this module handles (see the report / tests)
    * ``libopenvino_c.so.<NNNN>`` has only a versioned name in the wheel; it finds
      ``libopenvino.so.<NNNN>`` and TBB through its ``RPATH=$ORIGIN``, and libopenvino finds its
      device plugins next to itself, so a plain ``RTLD_LOCAL`` load from the wheel's folder works.
    * ``ov_element_type_e`` numbering is *not* stable across releases: 2025.x headers start with
      ``UNDEFINED = 0, DYNAMIC, BOOLEAN, ...``; 2026.x dropped ``UNDEFINED`` so every code moved
      down by one (``F32`` is 5 in 2025 and 4 in 2026). The layout is detected at load time by
      probing tensor byte sizes, never guessed from the version string.
    * ``ov_core_compile_model`` is variadic. ctypes cannot portably call variadic functions, so
      properties go through the non-variadic ``ov_core_compile_model_props`` (2026.x). On a
      library without it, the variadic function is called with zero property arguments only (no
      variadic arguments are passed at all, which is ABI-safe) and asking for properties raises.
    * ``ov_get_last_err_msg`` returns a *copy* the caller must ``ov_free`` (or NULL). The message
      is process-global (not per thread), never cleared on success (only ``ov_core_free`` clears
      it), and only set when a C++ exception was caught. It is therefore read right after the
      failing call and attached only for the statuses that come from caught exceptions.
    * ``ov_tensor_create_from_host_ptr`` does not copy: the request reads the numpy buffer during
      inference, so :class:`InferRequest` keeps the array alive until that input is replaced or
      the request is closed. It also rejects a NULL pointer, so empty inputs (e.g. a KV cache of
      length 0) use ``ov_tensor_create`` instead.
    * ``ov_tensor_get_shape`` builds its result with ``ov_shape_create``, which rejects rank 0, so
      it fails with ``INVALID_C_PARAM`` on a scalar tensor; that status is read as shape ``()``.
      Likewise ``ov_shape_create`` cannot make a rank-0 shape; a zeroed ``ov_shape_t`` is used.

C functions used (all return ``ov_status_e`` unless noted)
    ``ov_get_openvino_version``, ``ov_version_free`` (void), ``ov_get_error_info`` (const char*,
    static), ``ov_get_last_err_msg`` (char*, optional), ``ov_free`` (void), ``ov_core_create``,
    ``ov_core_free`` (void), ``ov_core_get_available_devices``, ``ov_available_devices_free``
    (void), ``ov_core_read_model``, ``ov_core_compile_model_props`` (optional),
    ``ov_core_compile_model`` (variadic; fallback, called with no variadic arguments),
    ``ov_model_free`` (void), ``ov_model_is_dynamic`` (bool), ``ov_model_inputs_size``,
    ``ov_model_outputs_size``, ``ov_model_const_input_by_index``,
    ``ov_model_const_output_by_index``, ``ov_port_get_any_name``, ``ov_port_get_element_type``,
    ``ov_output_const_port_free`` (void), ``ov_compiled_model_inputs_size``,
    ``ov_compiled_model_outputs_size``, ``ov_compiled_model_input_by_index``,
    ``ov_compiled_model_output_by_index``, ``ov_compiled_model_create_infer_request``,
    ``ov_compiled_model_free`` (void), ``ov_infer_request_set_tensor``,
    ``ov_infer_request_set_input_tensor_by_index``, ``ov_infer_request_get_tensor``,
    ``ov_infer_request_get_output_tensor_by_index``, ``ov_infer_request_infer``,
    ``ov_infer_request_free`` (void), ``ov_shape_create``, ``ov_shape_free``,
    ``ov_tensor_create_from_host_ptr``, ``ov_tensor_create``, ``ov_tensor_get_shape``,
    ``ov_tensor_get_element_type``, ``ov_tensor_get_byte_size``, ``ov_tensor_data``,
    ``ov_tensor_free`` (void).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

__all__ = [
    "ENV_VAR",
    "STATUS_NAMES",
    "Core",
    "CompiledModel",
    "InferRequest",
    "Model",
    "OVCApi",
    "OVCApiError",
    "OVCallError",
    "OVClosedError",
    "OVLibraryNotFound",
    "OVUnsupportedError",
    "OVVersionMismatch",
    "find_library",
    "load",
]

ENV_VAR = "RMBUILD_OPENVINO_C_LIB"
"""Environment variable naming the ``libopenvino_c`` file to load (overrides the wheel lookup)."""

_INSTALL_HINT = "pip install 'rmbuild[openvino]'"

# ov_status_e, copied from openvino/c/ov_common.h (identical in 2025.x and 2026.x).
STATUS_NAMES: dict[int, str] = {
    0: "OK",
    -1: "GENERAL_ERROR",
    -2: "NOT_IMPLEMENTED",
    -3: "NETWORK_NOT_LOADED",
    -4: "PARAMETER_MISMATCH",
    -5: "NOT_FOUND",
    -6: "OUT_OF_BOUNDS",
    -7: "UNEXPECTED",
    -8: "REQUEST_BUSY",
    -9: "RESULT_NOT_READY",
    -10: "NOT_ALLOCATED",
    -11: "INFER_NOT_STARTED",
    -12: "NETWORK_NOT_READ",
    -13: "INFER_CANCELLED",
    -14: "INVALID_C_PARAM",
    -15: "UNKNOWN_C_ERROR",
    -16: "NOT_IMPLEMENT_C_METHOD",
    -17: "UNKNOW_EXCEPTION",  # sic: the header's spelling
}

# The statuses the C layer returns from its catch blocks, i.e. the only ones for which it has just
# written ov_get_last_err_msg(). For the others (e.g. INVALID_C_PARAM) the global message is stale.
_STATUSES_WITH_MESSAGE = frozenset({-1, -2, -8, -13, -17})
_INVALID_C_PARAM = -14

# ov_element_type_e in header order for 2026.x (DYNAMIC = 0). 2025.x has an extra UNDEFINED = 0 in
# front, which shifts every code by one; OVCApi measures the shift at load time.
_ELEMENT_TYPE_NAMES: tuple[str, ...] = (
    "DYNAMIC", "BOOLEAN", "BF16", "F16", "F32", "F64", "I4", "I8", "I16", "I32", "I64",
    "U1", "U2", "U3", "U4", "U6", "U8", "U16", "U32", "U64", "NF4", "F8E4M3", "F8E5M3",
    "STRING", "F4E2M1", "F8E8M0",
)  # fmt: skip

# Element types that have an exact numpy equivalent. bf16/f8/i4/u4/nf4/string have none.
_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOLEAN": np.dtype(np.bool_),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "I8": np.dtype(np.int8),
    "I16": np.dtype(np.int16),
    "I32": np.dtype(np.int32),
    "I64": np.dtype(np.int64),
    "U8": np.dtype(np.uint8),
    "U16": np.dtype(np.uint16),
    "U32": np.dtype(np.uint32),
    "U64": np.dtype(np.uint64),
}

# Property keys whose value the library reads as a pointer to a struct or a device handle, not as
# a string. Passing a Python string there would make the library dereference garbage.
_POINTER_VALUED_PROPERTIES = frozenset(
    {
        "CACHE_ENCRYPTION_CALLBACKS",
        "OCL_CONTEXT",
        "OCL_QUEUE",
        "VA_DEVICE",
        "MEM_HANDLE",
        "DEV_OBJECT_HANDLE",
    }
)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class OVCApiError(Exception):
    """Root of every error raised by this module; carries an optional ``hint`` (what to do next)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nhint: {hint}")


class OVLibraryNotFound(OVCApiError):
    """``libopenvino_c`` could not be located or could not be loaded."""

    def __init__(self, message: str, *, searched: Iterable[str] = (), hint: str | None = None):
        self.searched = list(searched)
        super().__init__(message, hint=hint)


class OVVersionMismatch(OVCApiError):
    """The loaded library is not the OpenVINO version (or ABI) the caller asked for."""


class OVUnsupportedError(OVCApiError):
    """A request this binding or the loaded library cannot serve (dtype, properties, ...)."""


class OVClosedError(OVCApiError):
    """A method was called on an object whose C handle has already been freed."""


class OVCallError(OVCApiError):
    """A C API function returned a status other than ``OK``.

    Attributes: ``function`` (C name), ``status`` (int), ``status_name`` (the ``ov_status_e``
    enumerator), ``detail`` (the library's last error message, when it set one for this failure).
    """

    def __init__(self, function: str, status: int, status_name: str, detail: str | None = None):
        self.function = function
        self.status = status
        self.status_name = status_name
        self.detail = detail
        message = f"{function} failed with {status_name} ({status})"
        if detail:
            message += f": {detail.strip()}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.function, self.status, self.status_name, self.detail))


# --------------------------------------------------------------------------------------------
# Locating the library
# --------------------------------------------------------------------------------------------


def _library_patterns() -> tuple[str, ...]:
    if sys.platform == "win32":
        return ("openvino_c.dll",)
    if sys.platform == "darwin":
        return ("libopenvino_c.*.dylib", "libopenvino_c.dylib")
    return ("libopenvino_c.so.*", "libopenvino_c.so")


def _version_sort_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.name))


def _pick_library(folder: Path) -> Path | None:
    """The real (non-symlink) ``libopenvino_c`` file in *folder*; the newest if several."""
    candidates: dict[Path, Path] = {}
    for pattern in _library_patterns():
        for entry in folder.glob(pattern):
            real = entry.resolve()
            if real.is_file():
                candidates.setdefault(real, real)
    if not candidates:
        return None
    return max(candidates, key=_version_sort_key)


def _checked_explicit(path: str | os.PathLike[str], origin: str) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        found = _pick_library(candidate)
        if found is not None:
            return found
    elif candidate.is_file():
        return candidate.resolve()
    raise OVLibraryNotFound(
        f"OpenVINO C library not found at {str(candidate)!r} ({origin})",
        searched=[str(candidate)],
        hint=f"point {origin} at an existing libopenvino_c file or its folder, "
        f"or unset it and run `{_INSTALL_HINT}`",
    )


def find_library(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of ``libopenvino_c`` without importing the ``openvino`` package.

    Order: *explicit* (a file, or a folder holding it), then ``$RMBUILD_OPENVINO_C_LIB``, then the
    ``libs/`` folder of the installed ``openvino`` wheel. In the wheel the library only has a
    versioned name (``libopenvino_c.so.2641``); the real file is returned, the newest if several.

    Raises :class:`OVLibraryNotFound` listing every place that was searched.
    """
    if explicit is not None:
        return _checked_explicit(explicit, "the explicit library path")
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return _checked_explicit(from_env, f"${ENV_VAR}")

    searched: list[str] = []
    try:
        # find_spec on a top-level name locates the package without executing its __init__.
        spec = importlib.util.find_spec("openvino")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        for folder in (Path(location) / "libs", Path(location)):
            searched.append(str(folder))
            if folder.is_dir():
                found = _pick_library(folder)
                if found is not None:
                    return found
    where = ", ".join(searched) if searched else "no 'openvino' package on sys.path"
    raise OVLibraryNotFound(
        f"OpenVINO C library ({' / '.join(_library_patterns())}) not found; searched: {where}",
        searched=searched,
        hint=f"run `{_INSTALL_HINT}` in this environment, or set ${ENV_VAR} to the library file",
    )


# --------------------------------------------------------------------------------------------
# C structures and function table
# --------------------------------------------------------------------------------------------

_c_status = ctypes.c_int  # ov_status_e
_c_element_type = ctypes.c_uint  # ov_element_type_e (declared with 0U, so unsigned)
_handle = ctypes.c_void_p  # every opaque ov_*_t*
_out_handle = ctypes.POINTER(ctypes.c_void_p)


class _OvVersion(ctypes.Structure):
    _fields_ = [("buildNumber", ctypes.c_char_p), ("description", ctypes.c_char_p)]


class _OvShape(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int64), ("dims", ctypes.POINTER(ctypes.c_int64))]


class _OvAvailableDevices(ctypes.Structure):
    _fields_ = [("devices", ctypes.POINTER(ctypes.c_char_p)), ("size", ctypes.c_size_t)]


class _OvProperty(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_void_p)]


_size_out = ctypes.POINTER(ctypes.c_size_t)

# name -> (restype, argtypes, required)
_SIGNATURES: dict[str, tuple[Any, list[Any], bool]] = {
    "ov_get_openvino_version": (_c_status, [ctypes.POINTER(_OvVersion)], True),
    "ov_version_free": (None, [ctypes.POINTER(_OvVersion)], True),
    "ov_get_error_info": (ctypes.c_char_p, [_c_status], True),
    "ov_get_last_err_msg": (ctypes.c_void_p, [], False),
    "ov_free": (None, [ctypes.c_void_p], True),
    "ov_core_create": (_c_status, [_out_handle], True),
    "ov_core_free": (None, [_handle], True),
    "ov_core_get_available_devices": (
        _c_status,
        [_handle, ctypes.POINTER(_OvAvailableDevices)],
        True,
    ),
    "ov_available_devices_free": (None, [ctypes.POINTER(_OvAvailableDevices)], True),
    "ov_core_read_model": (
        _c_status,
        [_handle, ctypes.c_char_p, ctypes.c_char_p, _out_handle],
        True,
    ),
    "ov_core_compile_model_props": (
        _c_status,
        [
            _handle,
            _handle,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(_OvProperty),
            _out_handle,
        ],
        False,
    ),  # fmt: skip
    # Variadic: only the fixed part is declared, and it is only ever called with no extra args.
    "ov_core_compile_model": (
        _c_status,
        [_handle, _handle, ctypes.c_char_p, ctypes.c_size_t, _out_handle],
        True,
    ),
    "ov_model_free": (None, [_handle], True),
    "ov_model_is_dynamic": (ctypes.c_bool, [_handle], True),
    "ov_model_inputs_size": (_c_status, [_handle, _size_out], True),
    "ov_model_outputs_size": (_c_status, [_handle, _size_out], True),
    "ov_model_const_input_by_index": (_c_status, [_handle, ctypes.c_size_t, _out_handle], True),
    "ov_model_const_output_by_index": (_c_status, [_handle, ctypes.c_size_t, _out_handle], True),
    "ov_port_get_any_name": (_c_status, [_handle, ctypes.POINTER(ctypes.c_void_p)], True),
    "ov_port_get_element_type": (_c_status, [_handle, ctypes.POINTER(_c_element_type)], True),
    "ov_output_const_port_free": (None, [_handle], True),
    "ov_compiled_model_inputs_size": (_c_status, [_handle, _size_out], True),
    "ov_compiled_model_outputs_size": (_c_status, [_handle, _size_out], True),
    "ov_compiled_model_input_by_index": (_c_status, [_handle, ctypes.c_size_t, _out_handle], True),
    "ov_compiled_model_output_by_index": (
        _c_status,
        [_handle, ctypes.c_size_t, _out_handle],
        True,
    ),
    "ov_compiled_model_create_infer_request": (_c_status, [_handle, _out_handle], True),
    "ov_compiled_model_free": (None, [_handle], True),
    "ov_infer_request_set_tensor": (_c_status, [_handle, ctypes.c_char_p, _handle], True),
    "ov_infer_request_set_input_tensor_by_index": (
        _c_status,
        [_handle, ctypes.c_size_t, _handle],
        True,
    ),
    "ov_infer_request_get_tensor": (_c_status, [_handle, ctypes.c_char_p, _out_handle], True),
    "ov_infer_request_get_output_tensor_by_index": (
        _c_status,
        [_handle, ctypes.c_size_t, _out_handle],
        True,
    ),
    "ov_infer_request_infer": (_c_status, [_handle], True),
    "ov_infer_request_free": (None, [_handle], True),
    "ov_shape_create": (
        _c_status,
        [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(_OvShape)],
        True,
    ),
    "ov_shape_free": (_c_status, [ctypes.POINTER(_OvShape)], True),
    "ov_tensor_create_from_host_ptr": (
        _c_status,
        [_c_element_type, _OvShape, ctypes.c_void_p, _out_handle],
        True,
    ),
    "ov_tensor_create": (_c_status, [_c_element_type, _OvShape, _out_handle], True),
    "ov_tensor_get_shape": (_c_status, [_handle, ctypes.POINTER(_OvShape)], True),
    "ov_tensor_get_element_type": (_c_status, [_handle, ctypes.POINTER(_c_element_type)], True),
    "ov_tensor_get_byte_size": (_c_status, [_handle, _size_out], True),
    "ov_tensor_data": (_c_status, [_handle, ctypes.POINTER(ctypes.c_void_p)], True),
    "ov_tensor_free": (None, [_handle], True),
}


def _encode(text: str | os.PathLike[str]) -> bytes:
    return os.fsencode(text) if isinstance(text, os.PathLike) else text.encode("utf-8")


# --------------------------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------------------------


class OVCApi:
    """The loaded ``libopenvino_c`` with every used function declared.

    ``OVCApi(path=None, expected_major=None)``: *path* as for :func:`find_library`.
    *expected_major* (e.g. ``2026``) raises :class:`OVVersionMismatch` when the library's major
    differs. Loading also checks the ``ov_element_type_e`` layout (see the module docstring).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        expected_major: int | None = None,
    ) -> None:
        self.path = find_library(path)
        try:
            # RTLD_LOCAL is enough: libopenvino_c reaches libopenvino/TBB via RPATH=$ORIGIN and
            # libopenvino loads its plugins from its own folder. Nothing needs our symbols.
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise OVLibraryNotFound(
                f"could not load the OpenVINO C library {str(self.path)!r}: {exc}",
                searched=[str(self.path)],
                hint=f"reinstall with `{_INSTALL_HINT}`, or set ${ENV_VAR} to a working library",
            ) from exc
        self._functions: dict[str, Any] = {}
        missing: list[str] = []
        for name, (restype, argtypes, required) in _SIGNATURES.items():
            try:
                function = getattr(self._lib, name)
            except AttributeError:
                if required:
                    missing.append(name)
                continue
            function.restype = restype
            function.argtypes = argtypes
            self._functions[name] = function
        if missing:
            raise OVVersionMismatch(
                f"{self.path} lacks C API functions {', '.join(missing)}; "
                "is this OpenVINO's libopenvino_c (2025.0 or newer)?",
                hint=f"`{_INSTALL_HINT}` installs a supported OpenVINO",
            )
        self.version = self._read_version()
        if not self.version:
            raise OVVersionMismatch(f"{self.path}: ov_get_openvino_version returned no version")
        if expected_major is not None and self.major != expected_major:
            raise OVVersionMismatch(
                f"OpenVINO C library {self.path} is version {self.version} "
                f"(major {self.major}), expected major {expected_major}",
                hint="install the OpenVINO release the artifact was built with, "
                f"or point ${ENV_VAR} at it",
            )
        self._element_codes, self._element_names = self._detect_element_types()

    # -- raw calls ----------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        """Whether the loaded library exports the (known) C function *name*."""
        return name in self._functions

    def fn(self, name: str) -> Any:
        """The declared ctypes function *name* (raises OVUnsupportedError if absent)."""
        try:
            return self._functions[name]
        except KeyError:
            raise OVUnsupportedError(
                f"OpenVINO {getattr(self, 'version', '?')} does not export {name}"
            ) from None

    def call(self, name: str, *args: Any) -> None:
        """Call an ``ov_status_e`` function; raise :class:`OVCallError` unless it returns OK."""
        status = self._functions[name](*args)
        if status != 0:
            raise self._error(name, int(status))

    def _error(self, name: str, status: int) -> OVCallError:
        detail = None
        if status in _STATUSES_WITH_MESSAGE:
            detail = self.last_error_message()
        if not detail:
            info = self._functions["ov_get_error_info"](status)
            detail = info.decode("utf-8", "replace") if info else None
        return OVCallError(name, status, STATUS_NAMES.get(status, "UNKNOWN_STATUS"), detail)

    def last_error_message(self) -> str | None:
        """``ov_get_last_err_msg()`` (freed after copying), or None if absent/empty."""
        getter = self._functions.get("ov_get_last_err_msg")
        if getter is None:
            return None
        pointer = getter()
        if not pointer:
            return None
        try:
            return ctypes.string_at(pointer).decode("utf-8", "replace")
        finally:
            self._functions["ov_free"](pointer)

    def take_string(self, pointer: ctypes.c_void_p) -> str:
        """Copy a library-allocated ``char*`` into a str and ``ov_free`` it."""
        if not pointer.value:
            return ""
        try:
            return ctypes.string_at(pointer.value).decode("utf-8", "replace")
        finally:
            self._functions["ov_free"](pointer)

    # -- version and element types ------------------------------------------------------------

    def _read_version(self) -> str:
        version = _OvVersion()
        self.call("ov_get_openvino_version", ctypes.byref(version))
        try:
            return (version.buildNumber or b"").decode("utf-8", "replace")
        finally:
            self._functions["ov_version_free"](ctypes.byref(version))

    @property
    def major(self) -> int:
        """The release year, e.g. ``2026`` for ``2026.4.1-22982-...``."""
        match = re.match(r"(\d+)", self.version)
        return int(match.group(1)) if match else -1

    def _tensor_byte_size(self, code: int, dims: tuple[int, ...]) -> int | None:
        shape = self.make_shape(dims)
        tensor = ctypes.c_void_p()
        try:
            status = self._functions["ov_tensor_create"](code, shape, ctypes.byref(tensor))
            if status != 0:
                return None
            size = ctypes.c_size_t()
            if self._functions["ov_tensor_get_byte_size"](tensor, ctypes.byref(size)) != 0:
                return None
            return size.value
        finally:
            if tensor.value:
                self._functions["ov_tensor_free"](tensor)
            self.free_shape(shape)

    def _detect_element_types(self) -> tuple[dict[str, int], dict[int, str]]:
        # Code 4 is F32 (4 bytes) in the 2026 layout and F16 (2 bytes) in the 2025 layout.
        probe = self._tensor_byte_size(4, (1,))
        offsets = {4: 0, 2: 1}
        if probe not in offsets:
            raise OVVersionMismatch(
                f"OpenVINO {self.version}: unknown ov_element_type_e layout "
                f"(code 4 gave {probe} bytes per element)"
            )
        offset = offsets[probe]
        codes = {name: index + offset for index, name in enumerate(_ELEMENT_TYPE_NAMES)}
        # Confirm every type we map to numpy has the expected width under this layout; a release
        # that inserts another enumerator would fail here instead of corrupting tensors.
        for name, dtype in _NUMPY_DTYPES.items():
            got = self._tensor_byte_size(codes[name], (3,))
            if got != 3 * dtype.itemsize:
                raise OVVersionMismatch(
                    f"OpenVINO {self.version}: ov_element_type_e {name}={codes[name]} holds "
                    f"{got} bytes for 3 elements, expected {3 * dtype.itemsize}; "
                    "this binding does not know this release's enum layout"
                )
        return codes, {code: name for name, code in codes.items()}

    def element_code(self, dtype: np.dtype[Any]) -> int:
        """The ``ov_element_type_e`` code for a numpy dtype."""
        for name, known in _NUMPY_DTYPES.items():
            if known == dtype:
                return self._element_codes[name]
        raise OVUnsupportedError(
            f"numpy dtype {dtype} has no OpenVINO element type mapping",
            hint=f"use one of {', '.join(str(d) for d in _NUMPY_DTYPES.values())}",
        )

    def element_name(self, code: int) -> str:
        """The header name (``F32``, ``I64``...) of an ``ov_element_type_e`` code."""
        return self._element_names.get(code, f"UNKNOWN({code})")

    # -- shapes ------------------------------------------------------------------------------

    def make_shape(self, dims: Iterable[int]) -> _OvShape:
        """An ``ov_shape_t`` owning library memory; release it with :meth:`free_shape`."""
        dims = tuple(int(d) for d in dims)
        shape = _OvShape()
        if not dims:
            # ov_shape_create rejects rank 0; a scalar is rank 0 with no dims array.
            return shape
        array = (ctypes.c_int64 * len(dims))(*dims)
        self.call("ov_shape_create", len(dims), array, ctypes.byref(shape))
        return shape

    def free_shape(self, shape: _OvShape) -> None:
        if shape.dims:
            self._functions["ov_shape_free"](ctypes.byref(shape))

    def __repr__(self) -> str:
        return f"OVCApi(path={str(self.path)!r}, version={self.version!r})"


_DEFAULT: OVCApi | None = None
_DEFAULT_LOCK = threading.Lock()


def load(
    path: str | os.PathLike[str] | None = None, *, expected_major: int | None = None
) -> OVCApi:
    """A process-wide :class:`OVCApi` for the default library (or a fresh one for *path*)."""
    global _DEFAULT
    if path is not None:
        return OVCApi(path, expected_major=expected_major)
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = OVCApi()
    if expected_major is not None and _DEFAULT.major != expected_major:
        raise OVVersionMismatch(
            f"OpenVINO C library {_DEFAULT.path} is version {_DEFAULT.version}, "
            f"expected major {expected_major}"
        )
    return _DEFAULT


# --------------------------------------------------------------------------------------------
# Owned handles
# --------------------------------------------------------------------------------------------


class _Owned:
    """One C handle, freed exactly once by ``close()`` (idempotent)."""

    _free_function: str = ""
    # Class-level defaults so close()/__del__ stay safe if __init__ raised half way.
    _handle: ctypes.c_void_p | None = None
    _parent: _Owned | None = None

    def __init__(self, api: OVCApi, handle: ctypes.c_void_p, parent: _Owned | None = None):
        self._api = api
        self._handle: ctypes.c_void_p | None = handle
        # Keeps the parent alive for the garbage collector; never used for calls.
        self._parent = parent

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _live(self) -> ctypes.c_void_p:
        if self._handle is None:
            raise OVClosedError(f"{type(self).__name__} is closed")
        return self._handle

    def close(self) -> None:
        """Free the C handle. A second call does nothing."""
        handle, self._handle = self._handle, None
        if handle is not None and handle.value:
            self._api.fn(self._free_function)(handle)
        self._parent = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Safety net only: explicit close() is the contract. Never raise from a finalizer.
        try:
            self.close()
        except Exception:
            pass


def _new_handle(api: OVCApi, function: str, *args: Any) -> ctypes.c_void_p:
    handle = ctypes.c_void_p()
    api.call(function, *args, ctypes.byref(handle))
    return handle


def _port_names(api: OVCApi, owner: ctypes.c_void_p, size_fn: str, port_fn: str) -> list[str]:
    count = ctypes.c_size_t()
    api.call(size_fn, owner, ctypes.byref(count))
    names: list[str] = []
    for index in range(count.value):
        port = _new_handle(api, port_fn, owner, index)
        try:
            raw = ctypes.c_void_p()
            api.call("ov_port_get_any_name", port, ctypes.byref(raw))
            names.append(api.take_string(raw))
        finally:
            api.fn("ov_output_const_port_free")(port)
    return names


def _port_types(api: OVCApi, owner: ctypes.c_void_p, size_fn: str, port_fn: str) -> list[str]:
    count = ctypes.c_size_t()
    api.call(size_fn, owner, ctypes.byref(count))
    types: list[str] = []
    for index in range(count.value):
        port = _new_handle(api, port_fn, owner, index)
        try:
            code = _c_element_type()
            api.call("ov_port_get_element_type", port, ctypes.byref(code))
            types.append(api.element_name(code.value))
        finally:
            api.fn("ov_output_const_port_free")(port)
    return types


class Core(_Owned):
    """``ov_core_t``: device discovery, model reading and compiling."""

    _free_function = "ov_core_free"

    def __init__(self, api: OVCApi | None = None) -> None:
        api = api if api is not None else load()
        super().__init__(api, _new_handle(api, "ov_core_create"))

    def available_devices(self) -> list[str]:
        """Device names OpenVINO sees here, e.g. ``["CPU"]`` or ``["CPU", "GPU"]``."""
        devices = _OvAvailableDevices()
        self._api.call("ov_core_get_available_devices", self._live(), ctypes.byref(devices))
        try:
            return [devices.devices[i].decode("utf-8") for i in range(devices.size)]
        finally:
            self._api.fn("ov_available_devices_free")(ctypes.byref(devices))

    def read_model(
        self, xml: str | os.PathLike[str], bin: str | os.PathLike[str] | None = None
    ) -> Model:
        """Read an IR (``.xml`` + ``.bin`` next to it unless *bin* is given) or an ONNX file."""
        handle = _new_handle(
            self._api,
            "ov_core_read_model",
            self._live(),
            _encode(xml),
            None if bin is None else _encode(bin),
        )
        return Model(self._api, handle, self)

    def compile_model(
        self,
        model: Model,
        device: str = "CPU",
        properties: Mapping[str, str] | None = None,
    ) -> CompiledModel:
        """Compile *model* for *device* with string-valued *properties*.

        Properties need ``ov_core_compile_model_props`` (OpenVINO 2026.x); the variadic
        ``ov_core_compile_model`` is only used without properties, see the module docstring.
        """
        props = dict(properties or {})
        for key, value in props.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise OVUnsupportedError(
                    f"property {key!r}={value!r}: keys and values must be str",
                    hint='write numbers and booleans as OpenVINO expects, e.g. "4", "YES"',
                )
            if key in _POINTER_VALUED_PROPERTIES:
                raise OVUnsupportedError(f"property {key!r} takes a pointer, not a string")
        core = self._live()
        model_handle = model._live()
        device_bytes = _encode(device)
        compiled = ctypes.c_void_p()
        if self._api.has("ov_core_compile_model_props"):
            encoded = [(_encode(k), _encode(v)) for k, v in props.items()]
            array = (_OvProperty * max(len(encoded), 1))()
            for slot, (key, value) in zip(array, encoded, strict=False):
                slot.key = key
                slot.value = ctypes.cast(ctypes.c_char_p(value), ctypes.c_void_p)
            # `encoded` keeps the bytes alive for the duration of the call.
            self._api.call(
                "ov_core_compile_model_props",
                core,
                model_handle,
                device_bytes,
                len(encoded),
                array if encoded else None,
                ctypes.byref(compiled),
            )
            del encoded
        elif props:
            raise OVUnsupportedError(
                f"OpenVINO {self._api.version} has no ov_core_compile_model_props; "
                "compile properties cannot be passed through ctypes (the other entry point is "
                "variadic)",
                hint="upgrade OpenVINO to 2026.x or compile without properties",
            )
        else:
            self._api.call(
                "ov_core_compile_model", core, model_handle, device_bytes, 0,
                ctypes.byref(compiled),
            )  # fmt: skip
        return CompiledModel(self._api, compiled, self)


class Model(_Owned):
    """``ov_model_t``: a read (not yet compiled) model."""

    _free_function = "ov_model_free"

    @property
    def input_names(self) -> list[str]:
        return _port_names(
            self._api, self._live(), "ov_model_inputs_size", "ov_model_const_input_by_index"
        )

    @property
    def output_names(self) -> list[str]:
        return _port_names(
            self._api, self._live(), "ov_model_outputs_size", "ov_model_const_output_by_index"
        )

    @property
    def input_types(self) -> list[str]:
        """Element type names (``F32``, ``I64``...) of the inputs, in order."""
        return _port_types(
            self._api, self._live(), "ov_model_inputs_size", "ov_model_const_input_by_index"
        )

    def is_dynamic(self) -> bool:
        return bool(self._api.fn("ov_model_is_dynamic")(self._live()))


class CompiledModel(_Owned):
    """``ov_compiled_model_t``: a model compiled for one device."""

    _free_function = "ov_compiled_model_free"

    @property
    def input_names(self) -> list[str]:
        return _port_names(
            self._api,
            self._live(),
            "ov_compiled_model_inputs_size",
            "ov_compiled_model_input_by_index",
        )

    @property
    def output_names(self) -> list[str]:
        return _port_names(
            self._api,
            self._live(),
            "ov_compiled_model_outputs_size",
            "ov_compiled_model_output_by_index",
        )

    def create_infer_request(self) -> InferRequest:
        handle = _new_handle(self._api, "ov_compiled_model_create_infer_request", self._live())
        return InferRequest(self._api, handle, self)


class InferRequest(_Owned):
    """``ov_infer_request_t``: set inputs, run, read outputs. Not safe for concurrent use."""

    _free_function = "ov_infer_request_free"

    def __init__(self, api: OVCApi, handle: ctypes.c_void_p, parent: _Owned | None = None):
        super().__init__(api, handle, parent)
        # The request reads these buffers in place (zero copy); they must outlive their use.
        self._inputs: dict[str | int, np.ndarray[Any, Any]] = {}

    def set_input(self, name_or_index: str | int, array: np.ndarray[Any, Any]) -> None:
        """Bind *array* to an input, by tensor name or input index, without copying.

        The array is referenced (not copied) until this input is set again or the request is
        closed; changing it in place before :meth:`infer` changes what the model sees.
        Non-contiguous arrays are copied to a contiguous buffer first.
        """
        request = self._live()
        data = np.asarray(array)
        if not data.flags.c_contiguous:
            # (np.ascontiguousarray alone would also turn a 0-d array into shape (1,).)
            data = np.ascontiguousarray(data).reshape(data.shape)
        if data.dtype.byteorder not in ("=", "|"):
            data = data.astype(data.dtype.newbyteorder("="))
        code = self._api.element_code(data.dtype)
        shape = self._api.make_shape(data.shape)
        tensor = ctypes.c_void_p()
        try:
            if data.size == 0:
                # from_host_ptr rejects a NULL pointer, and an empty numpy buffer's pointer is
                # not guaranteed to be usable (a KV cache of length 0); an owned empty tensor is
                # equivalent and has no bytes to copy.
                self._api.call("ov_tensor_create", code, shape, ctypes.byref(tensor))
            else:
                self._api.call(
                    "ov_tensor_create_from_host_ptr",
                    code,
                    shape,
                    ctypes.c_void_p(data.ctypes.data),
                    ctypes.byref(tensor),
                )
            if isinstance(name_or_index, str):
                self._api.call(
                    "ov_infer_request_set_tensor", request, name_or_index.encode("utf-8"), tensor
                )
            else:
                self._api.call(
                    "ov_infer_request_set_input_tensor_by_index",
                    request,
                    int(name_or_index),
                    tensor,
                )
            # Only now does the request reference the buffer; keep it until it is replaced.
            self._inputs[name_or_index] = data
        finally:
            # The request holds its own reference to the ov::Tensor; our wrapper can go.
            if tensor.value:
                self._api.fn("ov_tensor_free")(tensor)
            self._api.free_shape(shape)

    def infer(self) -> None:
        """Run inference synchronously (the GIL is released during the call)."""
        self._api.call("ov_infer_request_infer", self._live())

    def get_output(self, name_or_index: str | int) -> np.ndarray[Any, Any]:
        """A numpy copy of an output tensor, by tensor name or output index."""
        request = self._live()
        tensor = ctypes.c_void_p()
        if isinstance(name_or_index, str):
            self._api.call(
                "ov_infer_request_get_tensor",
                request,
                name_or_index.encode("utf-8"),
                ctypes.byref(tensor),
            )
        else:
            self._api.call(
                "ov_infer_request_get_output_tensor_by_index",
                request,
                int(name_or_index),
                ctypes.byref(tensor),
            )
        try:
            return self._copy_tensor(tensor)
        finally:
            self._api.fn("ov_tensor_free")(tensor)

    def _copy_tensor(self, tensor: ctypes.c_void_p) -> np.ndarray[Any, Any]:
        api = self._api
        code = _c_element_type()
        api.call("ov_tensor_get_element_type", tensor, ctypes.byref(code))
        name = api.element_name(code.value)
        dtype = _NUMPY_DTYPES.get(name)
        if dtype is None:
            raise OVUnsupportedError(f"output element type {name} has no numpy equivalent")
        shape = _OvShape()
        status = api.fn("ov_tensor_get_shape")(tensor, ctypes.byref(shape))
        try:
            if status == 0:
                dims = tuple(int(shape.dims[i]) for i in range(shape.rank))
            elif status == _INVALID_C_PARAM and not shape.dims:
                # ov_tensor_get_shape builds its result with ov_shape_create, which rejects
                # rank 0: on a valid tensor this status means the output is a scalar.
                dims = ()
            else:
                raise api._error("ov_tensor_get_shape", int(status))
        finally:
            api.free_shape(shape)
        byte_size = ctypes.c_size_t()
        api.call("ov_tensor_get_byte_size", tensor, ctypes.byref(byte_size))
        expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if byte_size.value != expected:
            raise OVCApiError(
                f"output tensor of {name}{list(dims)} reports {byte_size.value} bytes, "
                f"expected {expected}"
            )
        if expected == 0:
            return np.empty(dims, dtype=dtype)
        data = ctypes.c_void_p()
        api.call("ov_tensor_data", tensor, ctypes.byref(data))
        if not data.value:
            raise OVCApiError(f"ov_tensor_data returned NULL for a {expected}-byte tensor")
        buffer = (ctypes.c_char * expected).from_address(data.value)
        return np.frombuffer(buffer, dtype=dtype).reshape(dims).copy()

    def close(self) -> None:
        super().close()
        # Release the input buffers only after the request that reads them is gone.
        self._inputs = {}
