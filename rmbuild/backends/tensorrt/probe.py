"""What TensorRT can use here, found without importing TensorRT or starting CUDA.

* the ``tensorrt`` Python module (the runtime ``run`` loads plans with), by ``find_spec`` and
  its distribution's version; the pip wheels ``tensorrt``/``tensorrt-cu12``/``tensorrt-cu13``
  fetch their libraries from NVIDIA's own index at install time, so a failed install leaves a
  stub that is found but does not import: :func:`runtime_version` imports it only on demand;
* a CUDA array library for device buffers: ``cuda-python`` (``cuda.bindings``/``cuda.cudart``)
  or ``torch`` with CUDA;
* NVIDIA GPUs with name, driver and compute capability: :func:`rmbuild.host.resources.nvidia`
  (NVML, else ``nvidia-smi --query-gpu=name,driver_version,compute_cap``);
* the TensorRT version of a toolchain's ``trtexec``: its banner (``--help``), else the
  toolchain's ``tensorrt`` package.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Resource
from rmbuild.backends.tensorrt import planfile

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.toolrun.toolchains import Toolchain

DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")


def module_found() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def installed_version() -> str | None:
    """The ``tensorrt`` module's version here, without importing it where metadata says it."""
    if not module_found():
        return None
    for dist in DISTRIBUTIONS:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return runtime_version()


def runtime_version() -> str | None:
    """``tensorrt.__version__`` (imports the module: its libraries load)."""
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception:  # noqa: BLE001 - a stub wheel without its libraries: not usable
        return None


def buffer_library() -> str | None:
    """Which library can hold device buffers for the runtime: cuda-python, torch, or none."""
    for name, lib in (
        ("cuda.bindings", "cuda-python"),
        ("cuda.cudart", "cuda-python"),
        ("torch", "torch"),
    ):
        try:
            if importlib.util.find_spec(name) is not None:
                return lib
        except (ImportError, ValueError):  # no parent package, or a broken install
            continue
    return None


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs here (NVML or nvidia-smi), each with ``compute_capability`` and ``driver``.

    Asked once per process: a plan stage reads them for its key, its timing-cache key and its
    facts, and each ask may start nvidia-smi.
    """
    return [dict(g) for g in _nvidia()]


@functools.cache
def _nvidia() -> tuple[dict[str, Any], ...]:
    from rmbuild.host.resources import nvidia

    return tuple(nvidia())


def gpu(index: int = 0) -> dict[str, Any] | None:
    found = gpus()
    return found[index] if 0 <= index < len(found) else None


def devices() -> list[Resource]:
    return [
        Resource(
            type="gpu",
            name=str(g.get("name")),
            vendor="nvidia",
            attributes={
                "compute_capability": g.get("compute_capability"),
                "driver": g.get("driver"),
            },
        )
        for g in gpus()
    ]


def toolchain_version(profile: BuildProfile, toolchain: Toolchain) -> str | None:
    """The TensorRT version the stage's trtexec builds with.

    trtexec's banner (from ``tool.version_command``, run once per process in the tool's
    scrubbed environment: what runs, not what pip says) first; the toolchain's ``tensorrt``
    package otherwise.
    """
    if profile.tool.version_command:
        from rmbuild.toolrun.toolid import version_output

        found = planfile.banner_version(version_output(profile, toolchain))
        if found:
            return found
    for dist in DISTRIBUTIONS:
        if dist in toolchain.packages:
            version = toolchain.package_version(dist)
            if version:
                return version
    return None
