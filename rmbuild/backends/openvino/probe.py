"""What OpenVINO can use on this machine.

``installed_version`` and ``library_path`` never import the ``openvino`` package (the C library
is only located, not loaded), so ``rmbuild backends`` stays fast. ``probe`` asks the C API for
the devices, which loads the library and its device plugins.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
from pathlib import Path

from rmbuild.backends.base import Resource
from rmbuild.host.hostinfo import cpu_info

# OpenVINO device name prefix -> rmbuild resource type.
_DEVICE_TYPES = {"CPU": "cpu", "GPU": "gpu", "NPU": "npu"}


def installed_version() -> str | None:
    """The installed ``openvino`` distribution's version, or None, without importing it."""
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        return md.version("openvino")
    except md.PackageNotFoundError:
        return None


def library_path() -> Path:
    """The ``libopenvino_c`` file the runtime would load (raises capi.OVLibraryNotFound)."""
    from rmbuild.backends.openvino import capi

    return capi.find_library()


def probe() -> list[Resource]:
    """One resource per OpenVINO device (``CPU``, ``GPU.0``, ``NPU``...), through the C API."""
    from rmbuild.backends.openvino.runtime import available_devices

    resources = []
    for device in available_devices():
        kind = _DEVICE_TYPES.get(device.split(".")[0], "other")
        if kind == "cpu":
            cpu = cpu_info()
            resources.append(
                Resource(
                    type="cpu",
                    name=cpu["model"],
                    vendor=cpu["vendor"],
                    attributes={
                        "openvino_device": device,
                        "cores": cpu["cores"],
                        "isa": cpu["isa"],
                    },
                )
            )
        else:
            resources.append(
                Resource(
                    type=kind, name=device, vendor="Intel", attributes={"openvino_device": device}
                )
            )
    return resources
