"""What the binding knows of ``libopenvino_c``'s headers: status codes, element types, structs
and the signature of every C function it calls (see the package docstring for the pitfalls)."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

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
