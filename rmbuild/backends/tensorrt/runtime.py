"""TensorRT decoder step: one engine, one execution context, the shared KV loop.

The ``tensorrt`` Python API as NVIDIA documents it: ``trt.Runtime(logger)
.deserialize_cuda_engine(bytes)`` (None on a mismatch, the reason given to the logger, which
this module collects to name it), ``engine.create_execution_context()``,
then per step ``context.set_input_shape(name, shape)`` for every input,
``context.set_tensor_address(name, ptr)`` for every input and output, and
``context.execute_async_v3(stream)``. Output shapes come from the context once the input shapes
are set. Device memory comes from :class:`DeviceBuffers`: cuda-python where it is installed,
torch otherwise (both lazily imported; the ``tensorrt`` extra names cuda-python).

The cache goes back to the host between steps (the loop keeps numpy arrays, as for every
runtime): simple and exact, not the fastest a GPU can do. Keeping the presents on the device
is the next step where decode speed matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rmbuild.errors import IncompatibleArtifact
from rmbuild.runtime.kvlayout import KVLayout
from rmbuild.runtime.kvloop import KVLoop
from rmbuild.runtime.limits import Bound


class DeviceBuffers:
    """Device memory for one engine's tensors, by name; grown as shapes grow."""

    def __init__(self, device: int = 0) -> None:
        self.device = device
        self._cuda: Any = None
        self._torch: Any = None
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart  # cuda-python < 12.6
            self._cuda = cudart
            self._check(cudart.cudaSetDevice(device))
            self.stream = self._check(cudart.cudaStreamCreate())
        except ImportError:
            import torch

            self._torch = torch
            self._torch_stream = torch.cuda.Stream(device=f"cuda:{device}")
            self.stream = self._torch_stream.cuda_stream
        self._held: dict[str, tuple[Any, int]] = {}  # name -> (allocation, bytes)
        self._staged: list[np.ndarray] = []  # host arrays an async copy may still read

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime error {err}")
        return rest[0] if rest else None

    def _alloc(self, name: str, nbytes: int) -> int:
        held = self._held.get(name)
        if held is not None and held[1] >= nbytes:
            return self._ptr(held[0])
        if held is not None and self._cuda is not None:
            self._check(self._cuda.cudaFree(held[0]))
        size = max(nbytes, 1)
        if self._cuda is not None:
            alloc = self._check(self._cuda.cudaMalloc(size))
        else:
            alloc = self._torch.empty(size, dtype=self._torch.uint8, device=f"cuda:{self.device}")
        self._held[name] = (alloc, size)
        return self._ptr(alloc)

    def _ptr(self, alloc: Any) -> int:
        return int(alloc) if self._cuda is not None else int(alloc.data_ptr())

    def upload(self, name: str, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        self._staged.append(array)
        ptr = self._alloc(name, array.nbytes)
        if array.nbytes:
            if self._cuda is not None:
                kind = self._cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
                self._check(
                    self._cuda.cudaMemcpyAsync(
                        ptr, array.ctypes.data, array.nbytes, kind, self.stream
                    )
                )
            else:
                src = self._torch.from_numpy(array.view(np.uint8).reshape(-1))
                with self._torch.cuda.stream(self._torch_stream):
                    self._held[name][0][: array.nbytes].copy_(src, non_blocking=False)
        return ptr

    def output(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        return self._alloc(name, int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)

    def download(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        if out.nbytes:
            alloc = self._held[name][0]
            if self._cuda is not None:
                kind = self._cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
                self._check(self._cuda.cudaMemcpy(out.ctypes.data, alloc, out.nbytes, kind))
            else:
                data = alloc[: out.nbytes].cpu().numpy()
                out = data.view(dtype).reshape(shape)
        return out

    def synchronize(self) -> None:
        if self._cuda is not None:
            self._check(self._cuda.cudaStreamSynchronize(self.stream))
        else:
            self._torch_stream.synchronize()
        self._staged.clear()

    def close(self) -> None:
        if self._cuda is not None:
            for alloc, _size in self._held.values():
                self._cuda.cudaFree(alloc)
            self._cuda.cudaStreamDestroy(self.stream)
        self._held.clear()


def _collecting_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that keeps the errors TensorRT reports, so a refused plan's message
    can say why (NVIDIA: "require a non-null engine, and inspect the TensorRT logger")."""

    class Collecting(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))

    return Collecting()


class TensorRTDecoderStep(KVLoop):
    """Holds the deserialized engine and its one execution context."""

    def __init__(
        self,
        plan: Path,
        layout: KVLayout,
        *,
        device: int = 0,
        buffers: Any = None,
        version_compatible: bool = False,
    ) -> None:
        import tensorrt as trt

        self._trt = trt
        self._logger = _collecting_logger(trt)  # the runtime keeps a pointer: keep it alive
        self._runtime = trt.Runtime(self._logger)
        if version_compatible:
            # A version-compatible plan carries TensorRT's lean runtime, host code TensorRT
            # runs only when the application opts in; without it deserialization fails
            # (https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
            # version-compatibility.html; trtexec sets the same for --versionCompatible,
            # LazilyDeserializedEngine::get in samples/common/sampleEngines.cpp). NVIDIA asks
            # to do so only for trusted plans: this one comes from rmbuild's content-addressed
            # store, built by this team's trtexec (here, or pulled from the team's remote with
            # every blob hashed on arrival), never from an arbitrary file.
            self._runtime.engine_host_code_allowed = True
        engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if engine is None:  # the documented result of a plan this TensorRT cannot take
            raise IncompatibleArtifact(
                f"TensorRT {trt.__version__} could not deserialize {plan.name}",
                context=[f"TensorRT: {m}" for m in self._logger.errors[-3:]],
                hint="rebuild it on this machine with `rmbuild compile ... --rebuild`",
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        super().__init__(layout, what=plan.name)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        missing = [n for n in ["logits", *self.present_names] if n not in self._outputs]
        if missing:
            raise IncompatibleArtifact(
                f"{plan.name} has no output {missing[0]!r}",
                context=[f"outputs: {', '.join(self._outputs)}"],
            )
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.buffers = buffers if buffers is not None else DeviceBuffers(device)

    def compiled_limit(self) -> Bound | None:
        """The longest sequence the plan's optimization profile takes: the max of its
        ``attention_mask`` length (``max_seq``, or the max_shapes given by hand)."""
        try:
            shapes = self.engine.get_tensor_profile_shape("attention_mask", 0)
            longest = int(tuple(shapes[2])[1])
        except Exception:  # noqa: BLE001 - no profile for it (static mask): the layout's answer
            return super().compiled_limit()
        return Bound(
            longest,
            "the plan's optimization profile (attention_mask max length)",
            "rebuild with a larger max_seq flag",
        )

    def _run(self, feeds: dict[str, Any]) -> tuple[Any, list[Any]]:
        ctx = self.context
        for name in self._inputs:
            value = np.asarray(feeds[name], dtype=self._dtypes[name])
            shape = tuple(int(d) for d in value.shape)
            if ctx.set_input_shape(name, shape) is False:
                # Outside the plan's optimization profile (TensorRT says False, no exception).
                raise self.mismatch(
                    name,
                    "a shape inside the plan's optimization profile (its max_batch, max_seq)",
                    "x".join(map(str, shape)),
                    ["rebuild with larger max_batch/max_seq flags to take it"],
                )
            ctx.set_tensor_address(name, self.buffers.upload(name, value))
        shapes = {}
        for name in self._outputs:
            shapes[name] = tuple(int(d) for d in ctx.get_tensor_shape(name))
            ctx.set_tensor_address(
                name, self.buffers.output(name, shapes[name], self._dtypes[name])
            )
        if not ctx.execute_async_v3(self.buffers.stream):
            raise RuntimeError("TensorRT execute_async_v3 returned False (see its log above)")
        self.buffers.synchronize()
        logits = self.buffers.download("logits", shapes["logits"], self._dtypes["logits"])
        presents = [
            self.buffers.download(n, shapes[n], self._dtypes[n]) for n in self.present_names
        ]
        return logits[0, -1], presents

    def close(self) -> None:
        self.closed = True
        if hasattr(self.buffers, "close"):
            self.buffers.close()
        self.context = None
        self.engine = None
