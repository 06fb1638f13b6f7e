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

from rmbuild.backends.openvino import capi
from rmbuild.errors import EXIT_TOOL, BackendUnavailable, IncompatibleArtifact, RmbuildError
from rmbuild.runtime.session import kv_cache_shape, read_json

INSTALL = "pip install 'rmbuild[openvino]'"

# Virtual devices that take a list of real ones ("HETERO:GPU,CPU"); bare "AUTO" picks one itself.
_META_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")

_NUMPY_FROM_OV = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class OpenVINOError(RmbuildError):
    """OpenVINO refused a request made through rmbuild's binding."""

    code = "openvino-error"
    exit_code = EXIT_TOOL


class OpenVINOCallError(OpenVINOError):
    """A ``libopenvino_c`` function returned an error status (named in the message)."""

    code = "openvino-call-failed"

    def __init__(
        self,
        message: str,
        *,
        function: str = "",
        status: int = 0,
        status_name: str = "",
        context: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, context=context, hint=hint)
        self.function = function
        self.status = status
        self.status_name = status_name


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


def device_present(device: str, available: list[str]) -> bool:
    """Whether ``device`` (``GPU``, ``GPU.1``, ``HETERO:GPU,CPU``, ``AUTO``...) can run here."""
    head, _, rest = device.partition(":")
    if head.upper() in _META_DEVICES:
        parts = [p.strip() for p in rest.split(",") if p.strip()]
        return bool(parts or head.upper() == "AUTO") and all(
            device_present(p, available) for p in parts
        )
    return any(
        d.upper() == device.upper() or d.upper().startswith(device.upper() + ".") for d in available
    )


def check_device(device: str, available: list[str], *, artifact: str = "") -> None:
    """Raise IncompatibleArtifact naming the devices present if ``device`` is not one of them."""
    if device_present(device, available):
        return
    other = next((d.split(".")[0] for d in available), "CPU")
    raise IncompatibleArtifact(
        f"OpenVINO device {device!r} is not present on this machine; OpenVINO sees: "
        f"{', '.join(available) or 'no devices'}",
        hint=f"run it on a device that is here, e.g. `rmbuild run --artifact "
        f"{artifact or 'ID'} --device {other}`, or build for one (profile "
        f"openvino-{other.lower()})",
    )


def compile_properties(options: dict[str, Any]) -> dict[str, str]:
    """OpenVINO compile properties from the runtime flags (all as strings, as the C API wants)."""
    props: dict[str, str] = {}
    if precision := options.get("inference_precision"):
        props["INFERENCE_PRECISION_HINT"] = str(precision)
    if threads := int(options.get("num_threads") or 0):
        props["INFERENCE_NUM_THREADS"] = str(threads)
    # One sequence, one token at a time: latency, not throughput streams.
    props["PERFORMANCE_HINT"] = str(options.get("performance_hint") or "LATENCY")
    return props


class _KVLoop:
    """The feed/keep logic both decoder steps share; subclasses run one inference."""

    input_names: set[str]
    past_names: list[str]
    _past_shapes: dict[str, tuple[int, int, int, int]]
    _past_dtypes: dict[str, Any]

    def _setup(self, xml_path: Path, input_names: list[str], input_types: list[str]) -> None:
        self.input_names = set(input_names)
        missing = {"input_ids", "attention_mask"} - self.input_names
        if missing:
            raise OpenVINOError(
                f"{xml_path} is not a KV-cache LM: its inputs lack {sorted(missing)}",
                context=[f"inputs: {', '.join(input_names)}"],
            )
        types = dict(zip(input_names, input_types, strict=True))
        self.past_names = sorted(n for n in input_names if n.startswith("past_key_values."))
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        try:
            shape = kv_cache_shape(read_json(xml_path.parent / "config.json"))
        except ValueError as exc:
            raise OpenVINOError(
                str(exc), hint="the profile must carry config.json into the artifact"
            ) from None
        self._past_shapes = {n: shape for n in self.past_names}
        self._past_dtypes = {n: _NUMPY_FROM_OV.get(types[n], np.float32) for n in self.past_names}
        self.reset()

    def reset(self) -> None:
        self.past: dict[str, np.ndarray] = {
            name: np.zeros(shape, dtype=self._past_dtypes[name])
            for name, shape in self._past_shapes.items()
        }
        self.length = 0

    def _feeds(self, token_ids: np.ndarray) -> dict[str, np.ndarray]:
        n = int(token_ids.shape[0])
        total = self.length + n
        feeds: dict[str, np.ndarray] = {
            "input_ids": np.ascontiguousarray(token_ids, dtype=np.int64).reshape(1, n),
            "attention_mask": np.ones((1, total), dtype=np.int64),
            **self.past,
        }
        if "position_ids" in self.input_names:
            feeds["position_ids"] = np.arange(self.length, total, dtype=np.int64).reshape(1, n)
        return feeds


class OVCApiDecoderStep(_KVLoop):
    """A KV-cache decoder step that calls only the ``libopenvino_c`` binding.

    Holds a core, the compiled model and one infer request; ``close()`` frees them (idempotent).
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
            with ov_errors(f"loading {xml_path.name} on {self.device}", hint=hint):
                self._core = capi.Core(api)
                check_device(
                    self.device,
                    self._core.available_devices(),
                    artifact=str(options.get("artifact") or ""),
                )
                with self._core.read_model(xml_path) as model:
                    names, types = model.input_names, model.input_types
                    self._compiled = self._core.compile_model(
                        model, self.device, compile_properties(options)
                    )
                self._request = self._compiled.create_infer_request()
            self._setup(xml_path, names, types)
        except BaseException:
            self.close()
            raise

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        request = self._request
        if request is None:
            raise OpenVINOError("the OpenVINO session is closed")
        feeds = self._feeds(token_ids)
        with ov_errors("running the model"):
            for name, value in feeds.items():
                request.set_input(name, value)
            request.infer()
            logits = request.get_output("logits")
            presents = [request.get_output(name) for name in self.present_names]
        self.past = dict(zip(self.past_names, presents, strict=True))
        self.length += int(token_ids.shape[0])
        return logits[0, -1]

    def close(self) -> None:
        # Children first; each close() is idempotent and frees its handle exactly once.
        for attr in ("_request", "_compiled", "_core"):
            handle = getattr(self, attr, None)
            setattr(self, attr, None)
            if handle is not None:
                handle.close()


class OVPythonDecoderStep(_KVLoop):
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
        try:
            model = core.read_model(str(xml_path))
            self._compiled = core.compile_model(model, self.device, compile_properties(options))
        except RuntimeError as exc:
            raise OpenVINOError(
                f"loading {xml_path.name} on {self.device}: {exc}",
                hint="the IR may be corrupt: run `rmbuild verify`",
            ) from exc
        self._request = self._compiled.create_infer_request()
        inputs = model.inputs
        names = [port.get_any_name() for port in inputs]
        types = [_ov_type_name(port.get_element_type()) for port in inputs]
        self._setup(xml_path, names, types)

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        if self._request is None:
            raise OpenVINOError("the OpenVINO session is closed")
        feeds = self._feeds(token_ids)
        try:
            self._request.infer(feeds)
        except RuntimeError as exc:
            raise OpenVINOError(f"running the model: {exc}") from exc
        get = self._request.get_tensor
        self.past = {
            p: np.array(get(o).data)
            for p, o in zip(self.past_names, self.present_names, strict=True)
        }
        self.length += int(token_ids.shape[0])
        return np.array(get("logits").data[0, -1])

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _ov_type_name(element_type: Any) -> str:
    return {"f32": "F32", "f16": "F16", "f64": "F64"}.get(element_type.get_type_name(), "F32")
