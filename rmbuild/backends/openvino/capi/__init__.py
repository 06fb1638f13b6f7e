"""A small, typed ctypes binding to OpenVINO's C API (``libopenvino_c``).

rmbuild treats vendor runtimes as black boxes reached through their C libraries, so this module
never imports the ``openvino`` Python package: it only *locates* the wheel's ``libs/`` folder
(``importlib.util.find_spec``, which does not execute the package) and loads the C library with
:mod:`ctypes`. Top-level imports are stdlib + numpy only.

Layout: ``ctable`` (the headers' constants, structs and function signatures), ``library``
(locating and loading the library, its errors, checked calls) and ``handles`` (the owned C
objects). Everything public is re-exported here: ``from rmbuild.backends.openvino import capi``.

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

from rmbuild.backends.openvino.capi.ctable import ENV_VAR, STATUS_NAMES
from rmbuild.backends.openvino.capi.handles import CompiledModel, Core, InferRequest, Model
from rmbuild.backends.openvino.capi.library import (
    OVCallError,
    OVCApi,
    OVCApiError,
    OVClosedError,
    OVLibraryNotFound,
    OVUnsupportedError,
    OVVersionMismatch,
    find_library,
    load,
)

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
