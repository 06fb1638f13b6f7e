"""Locating and loading ``libopenvino_c``: the binding's errors, :func:`find_library`,
:class:`OVCApi` (the loaded library, checked calls, element-type layout) and :func:`load`."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rmbuild.backends.openvino.capi.ctable import (
    _ELEMENT_TYPE_NAMES,
    _INSTALL_HINT,
    _NUMPY_DTYPES,
    _SIGNATURES,
    _STATUSES_WITH_MESSAGE,
    ENV_VAR,
    STATUS_NAMES,
    _OvShape,
    _OvVersion,
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
