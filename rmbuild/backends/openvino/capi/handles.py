"""The owned C handles: :class:`Core`, :class:`Model`, :class:`CompiledModel` and
:class:`InferRequest`, each freeing its handle exactly once (see the package docstring)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import numpy as np

from rmbuild.backends.openvino.capi.ctable import (
    _INVALID_C_PARAM,
    _NUMPY_DTYPES,
    _POINTER_VALUED_PROPERTIES,
    _c_element_type,
    _encode,
    _OvAvailableDevices,
    _OvProperty,
    _OvShape,
)
from rmbuild.backends.openvino.capi.library import (
    OVCApi,
    OVCApiError,
    OVClosedError,
    OVUnsupportedError,
    load,
)

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
