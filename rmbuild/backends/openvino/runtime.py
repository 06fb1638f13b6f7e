"""OpenVINO decoder steps over an IR converted from an exported causal LM with KV cache.

The IR keeps the ONNX export's interface (``ovc`` preserves tensor names): inputs ``input_ids``,
``attention_mask``, optional ``position_ids`` and ``past_key_values.<i>.key|value``
([batch, kv_heads, past_len, head_dim]); outputs ``logits`` and ``present.<i>.key|value``.

:class:`OVCApiDecoderStep`, the default, reaches OpenVINO only through ``libopenvino_c`` (the
ctypes binding in :mod:`rmbuild.backends.openvino.capi`): this is the black-box runtime story.
:class:`OVPythonDecoderStep` (``runtime: python``) uses the ``openvino`` Python API instead, as a
reference and a faster alternative. Errors of the binding become rmbuild errors here: a missing or
unusable library is :class:`~rmbuild.errors.BackendUnavailable`, a failing C call is
:class:`OpenVINOCallError` with the ``ov_status_e`` name.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rmbuild.backends.openvino import capi, irlayout
from rmbuild.backends.openvino.devices import check_device, compile_properties, device_present
from rmbuild.errors import BackendUnavailable, OpenVINOCallError, OpenVINOError
from rmbuild.runtime import kvlayout
from rmbuild.runtime.kvloop import KVLoop

__all__ = [
    "OVCApiDecoderStep",
    "OVPythonDecoderStep",
    "OpenVINOCallError",
    "OpenVINOError",
    "available_devices",
    "check_device",
    "compile_properties",
    "device_present",
    "layout_of",
    "library_version",
    "load_api",
    "ov_errors",
]

INSTALL = "pip install 'rmbuild[openvino]'"


@contextlib.contextmanager
def ov_errors(what: str = "", hint: str | None = None) -> Iterator[None]:
    """Turn the binding's errors into rmbuild errors; ``what`` says what was being done."""
    prefix = f"{what}: " if what else ""
    try:
        yield
    except (capi.OVLibraryNotFound, capi.OVVersionMismatch) as exc:
        raise BackendUnavailable(
            f"backend 'openvino' cannot use its C library: {exc.message}",
            context=[f"searched: {p}" for p in getattr(exc, "searched", [])],
            hint=exc.hint or INSTALL,
        ) from exc
    except capi.OVCallError as exc:
        raise OpenVINOCallError(
            f"{prefix}OpenVINO C API {exc.function} failed with {exc.status_name} "
            f"({exc.status})" + (f": {exc.detail.strip()}" if exc.detail else ""),
            function=exc.function,
            status=exc.status,
            status_name=exc.status_name,
            hint=hint,
        ) from exc
    except capi.OVCApiError as exc:
        raise OpenVINOError(f"{prefix}{exc.message}", hint=exc.hint or hint) from exc


# The library's handle per path: $RMBUILD_OPENVINO_C_LIB is re-read on every load so that a
# change of it is honoured (capi.load() caches the first library it found for the process).
_APIS: dict[Path, capi.OVCApi] = {}
_APIS_LOCK = threading.Lock()


def load_api() -> capi.OVCApi:
    """The loaded ``libopenvino_c`` (BackendUnavailable if it is missing or unusable)."""
    with ov_errors():
        path = capi.find_library()
        with _APIS_LOCK:
            api = _APIS.get(path)
            if api is None:
                api = _APIS[path] = capi.load(path)
        return api


def library_version() -> str:
    """The loaded C library's OpenVINO version, e.g. ``2026.4.1-22982-...``."""
    return load_api().version


def available_devices() -> list[str]:
    """OpenVINO's device names here (``["CPU"]``, ``["CPU", "GPU.0", "NPU"]``...)."""
    api = load_api()
    with ov_errors("listing OpenVINO devices"), capi.Core(api) as core:
        return core.available_devices()


def layout_of(xml_path: Path) -> kvlayout.KVLayout:
    """The KV layout recorded at build time, else read from the IR itself."""
    return kvlayout.read_sidecar(xml_path.parent) or irlayout.read(xml_path)


class OVCApiDecoderStep(KVLoop):
    """A KV-cache decoder step that calls only the ``libopenvino_c`` binding.

    Holds a core, the compiled model and one infer request; ``close()`` frees them (idempotent).
    Inputs are set by their canonical names (``attention_mask``), which OpenVINO matches against
    all of a port's names, so a port that ``ov_port_get_any_name`` reports by another of its
    names is still found.
    """

    def __init__(self, xml_path: Path, options: dict[str, Any] | None = None) -> None:
        options = options or {}
        self.device = str(options.get("device") or "CPU")
        self._core: capi.Core | None = None
        self._compiled: capi.CompiledModel | None = None
        self._request: capi.InferRequest | None = None
        api = load_api()
        hint = "the IR may be corrupt: run `rmbuild verify` and rebuild it with `rmbuild compile`"
        try:
            layout = layout_of(xml_path)
            with ov_errors(f"loading {xml_path.name} on {self.device}", hint=hint):
                self._core = capi.Core(api)
                check_device(
                    self.device,
                    self._core.available_devices(),
                    artifact=str(options.get("artifact") or ""),
                )
                with self._core.read_model(xml_path) as model:
                    self._compiled = self._core.compile_model(
                        model, self.device, compile_properties(options)
                    )
                self._request = self._compiled.create_infer_request()
            super().__init__(layout, what=xml_path.name)
        except BaseException:
            self.close()
            raise

    gives_all_positions = True

    def _run_batch(
        self, feeds: dict[str, Any], all_positions: bool = False
    ) -> tuple[Any, list[Any]]:
        request = self._request
        if request is None:
            raise self.closed_error()
        with ov_errors("running the model"):
            for name, value in feeds.items():
                request.set_input(name, value)
            request.infer()
            logits = request.get_output("logits")
            presents = [request.get_output(name) for name in self.present_names]
        return (logits if all_positions else logits[:, -1]), presents

    def close(self) -> None:
        self.closed = True
        # Children first; each close() is idempotent and frees its handle exactly once.
        for attr in ("_request", "_compiled", "_core"):
            handle = getattr(self, attr, None)
            setattr(self, attr, None)
            if handle is not None:
                handle.close()


class OVPythonDecoderStep(KVLoop):
    """The same loop through the ``openvino`` Python API (``runtime: python``)."""

    def __init__(self, xml_path: Path, options: dict[str, Any] | None = None) -> None:
        options = options or {}
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailable(
                f"the openvino Python package does not import: {exc}", hint=INSTALL
            ) from exc
        self.device = str(options.get("device") or "CPU")
        core = ov.Core()
        check_device(
            self.device, list(core.available_devices), artifact=str(options.get("artifact") or "")
        )
        layout = layout_of(xml_path)
        try:
            model = core.read_model(str(xml_path))
            self._compiled = core.compile_model(model, self.device, compile_properties(options))
        except RuntimeError as exc:
            raise OpenVINOError(
                f"loading {xml_path.name} on {self.device}: {exc}",
                hint="the IR may be corrupt: run `rmbuild verify`",
            ) from exc
        # Every name of every port: the IR's layout must name the same inputs.
        names = {n for port in model.inputs for n in port.get_names()}
        if missing := [n for n in layout.input_names if n not in names]:
            raise OpenVINOError(f"{xml_path.name} has no inputs named {missing}")
        self._request = self._compiled.create_infer_request()
        super().__init__(layout, what=xml_path.name)

    gives_all_positions = True

    def _run_batch(
        self, feeds: dict[str, Any], all_positions: bool = False
    ) -> tuple[Any, list[Any]]:
        if self._request is None:
            raise self.closed_error()
        try:
            self._request.infer(feeds)
        except RuntimeError as exc:
            raise OpenVINOError(f"running the model: {exc}") from exc
        get = self._request.get_tensor
        presents = [np.array(get(name).data) for name in self.present_names]
        logits = get("logits").data
        return np.array(logits if all_positions else logits[:, -1]), presents

    def close(self) -> None:
        self.closed = True
        self._request = None
        self._compiled = None
