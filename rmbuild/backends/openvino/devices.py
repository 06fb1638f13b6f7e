"""OpenVINO device names and compile properties: pure functions, no library, no numpy.

Kept apart from the runtime so that the plugin and its tests can reason about devices on a
machine without the openvino extra.
"""

from __future__ import annotations

from typing import Any

from rmbuild.errors import IncompatibleArtifact

# Virtual devices that take a list of real ones ("HETERO:GPU,CPU"); bare "AUTO" picks one itself.
_META_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


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
