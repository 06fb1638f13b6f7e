"""Which Triton Inference Server container releases run an artifact: the backend versions each
release ships, as NVIDIA publishes them, and rmbuild's own load rules applied to them.

The data is Triton's release compatibility matrix,
https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/compatibility.html
(the same page as ``docs/introduction/compatibility.md`` in
https://github.com/triton-inference-server/server): the ONNX Runtime version of each release,
and the TensorRT version of each ``trtllm-python-py3`` container (the only TensorRT column the
matrix publishes). It publishes no OpenVINO versions, so no release is named for an OpenVINO
artifact; the rule it must meet is given instead. Add a row when NVIDIA publishes a release.
"""

from __future__ import annotations

from typing import Any

from rmbuild.backends.base import version_tuple

MATRIX_URL = (
    "https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/"
    "introduction/compatibility.html"
)

# Triton release -> ONNX Runtime in its onnxruntime backend ("ONNX Runtime Versions").
ONNXRUNTIME: dict[str, str] = {
    "26.08": "1.28.0",
    "26.07": "1.27.0",
    "26.06": "1.24.4",
    "26.05": "1.24.4",
    "26.04": "1.24.4",
    "26.03": "1.24.2",
    "26.02": "1.24.1",
    "26.01": "1.23.2",
    "25.12": "1.23.2",
    "25.11": "1.23.2",
    "25.10": "1.23.1",
    "25.09": "1.23.0",
    "25.08": "1.23.0",
    "25.07": "1.22.0",
    "25.06": "1.22.0",
    "25.05": "1.22.0",
    "25.04": "1.21.0",
    "25.03": "1.21.0",
    "25.02": "1.20.1",
    "25.01": "1.20.1",
    "24.12": "1.20.1",
    "24.11": "1.19.2",
    "24.10": "1.19.2",
    "24.09": "1.19.2",
    "24.08": "1.18.1",
    "24.07": "1.18.1",
    "24.06": "1.18.0",
    "24.05": "1.18.0",
    "24.04": "1.17.3",
}

# Triton release -> TensorRT in its trtllm-python-py3 container ("Container Name:
# trtllm-python-py3"). 24.04's 9.3.0.post12.dev1 is left out: a pre-release.
TENSORRT: dict[str, str] = {
    "26.07": "10.14.1.48",
    "26.06": "10.14.1.48",
    "26.05": "10.14.1.48",
    "26.04": "10.14.1.48",
    "26.03": "10.14.1.48",
    "26.02": "10.13.3.9",
    "26.01": "10.13.3.9",
    "25.12": "10.13.3.9",
    "25.11": "10.13.3.9",
    "25.10": "10.11.0.33",
    "25.09": "10.11.0.33",
    "25.08": "10.11.0.33",
    "25.07": "10.10.0.31",
    "25.06": "10.10.0.31",
    "25.05": "10.9.0.34",
    "25.04": "10.9.0.34",
    "25.03": "10.9.0.34",
    "25.02": "10.8.0.43",
    "25.01": "10.8.0.43",
    "24.12": "10.7.0",
    "24.11": "10.6.0",
    "24.10": "10.4.0",
    "24.09": "10.4.0",
    "24.08": "10.3.0",
    "24.07": "10.1.0",
    "24.06": "10.0.1",
    "24.05": "10.0.1.6",
}


def _newest_first(releases: list[str]) -> list[str]:
    return sorted(releases, key=lambda r: tuple(int(p) for p in r.split(".")), reverse=True)


def onnxruntime_releases(built: str | None, level: str | None) -> tuple[list[str], str]:
    """Releases whose ONNX Runtime loads a graph ONNX Runtime ``built`` optimized at
    ``level`` (None: a plain export), by the rule rmbuild's own loader applies, and the rule."""
    if built is None:
        rule = "a plain ONNX export: any ONNX Runtime that supports its opset"
        return _newest_first(list(ONNXRUNTIME)), rule
    b = version_tuple(built)
    if level == "all":
        rule = f"optimized at level 'all' by ONNX Runtime {built}: the same major.minor"
        ok = [r for r, v in ONNXRUNTIME.items() if version_tuple(v)[:2] == b[:2]]
    else:
        rule = f"optimized by ONNX Runtime {built}: that release or a later one"
        ok = [r for r, v in ONNXRUNTIME.items() if version_tuple(v) >= b]
    return _newest_first(ok), rule


def tensorrt_releases(built: str, version_compatible: bool) -> tuple[list[str], str]:
    """Releases whose TensorRT deserializes a plan TensorRT ``built`` made, by the rule
    rmbuild's own loader applies (the exact release, or NVIDIA's version-compatible rule)."""
    from rmbuild.backends.tensorrt import planfile
    from rmbuild.backends.tensorrt.plugin import version_compatible_loads

    if version_compatible:
        rule = f"built --versionCompatible by TensorRT {built}: NVIDIA's forward rule"
        ok = [r for r, v in TENSORRT.items() if version_compatible_loads(built, v)]
    else:
        rule = f"built by TensorRT {built}: a plan needs that exact TensorRT release"
        ok = [r for r, v in TENSORRT.items() if planfile.same_release(built, v)]
    return _newest_first(ok), rule


def releases_for(backend: str, packages: dict[str, str], fp: dict[str, Any], flags: dict[str, Any]):  # noqa: ANN201
    """``{"releases": [...], "containers": [...], "rule": str, "source": url}`` for an
    artifact of ``backend`` built with ``packages`` (and fingerprint ``fp``)."""
    if backend == "onnxruntime":
        built = packages.get("onnxruntime")
        releases, rule = onnxruntime_releases(built, flags.get("opt_level") if built else None)
        containers = [f"nvcr.io/nvidia/tritonserver:{r}-py3" for r in releases]
        versions = {r: ONNXRUNTIME[r] for r in releases}
        newest = max(ONNXRUNTIME.values(), key=version_tuple)
        why = (
            ""
            if releases
            else f"no published Triton release ships ONNX Runtime {built} or later (the newest "
            f"ships {newest}): build the artifact with onnxruntime {newest} or older for Triton"
        )
    elif backend == "tensorrt":
        built = str(fp.get("tensorrt") or packages.get("tensorrt") or "")
        releases, rule = tensorrt_releases(built, bool(fp.get("version_compatible")))
        containers = [f"nvcr.io/nvidia/tritonserver:{r}-trtllm-python-py3" for r in releases]
        versions = {r: TENSORRT[r] for r in releases}
        why = "" if releases else f"no published release ships TensorRT {built}"
    else:  # openvino
        built = packages.get("openvino")
        releases, containers, versions = [], [], {}
        rule = f"an IR written by OpenVINO {built}: OpenVINO {built} or later"
        why = (
            "Triton's compatibility matrix publishes no OpenVINO versions, so no release is "
            "named: check the openvino backend's version in the container (its "
            "libopenvino.so) against the rule"
        )
    return {
        "releases": releases,
        "containers": containers,
        "backend_versions": versions,
        "rule": rule,
        "none_because": why or None,
        "source": MATRIX_URL,
    }
