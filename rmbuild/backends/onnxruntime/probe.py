"""What ONNX Runtime can use on this machine, found without importing it."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util

from rmbuild.backends.base import Resource
from rmbuild.host.hostinfo import cpu_info

# The distributions that provide the `onnxruntime` module (CPU, GPU, OpenVINO EP builds...).
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")


def installed_version() -> str | None:
    """The installed ONNX Runtime version, or None, without importing it."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    for dist in DISTRIBUTIONS:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def probe() -> list[Resource]:
    if installed_version() is None:
        return []
    cpu = cpu_info()
    return [
        Resource(
            type="cpu",
            name=cpu["model"],
            vendor=cpu["vendor"],
            attributes={"cores": cpu["cores"], "isa": cpu["isa"]},
        )
    ]
