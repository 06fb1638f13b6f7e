"""The VN-series NPU backend: what rmbuild asks of it, hook by hook.

Build side: the profile ``vnpu-compile`` (shipped in ``resources/``) runs the vendor's compiler
``vnpuc`` through rmbuild's BinaryCompilerAdapter; this plugin only adds what the binary cannot
say for itself: the SKU it targets (a probe fact, in the key), that SKU as a flag when the
target left it to the host, and the blob's header for ``rmbuild show``.

Run side: ``libvnpu.so`` through :mod:`rmbuild_vendor_npu.capi` (ctypes over the header's
function table). The plugin imports the library only inside methods, so ``rmbuild --help`` and
``rmbuild ls`` work where the SDK is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, Resource
from rmbuild.errors import IncompatibleArtifact

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain

DEFAULT_SKU = "VN-1"  # what vnpuc targets where no device says otherwise
INSTALL = (
    "install the VN SDK into this environment: python examples/vendor-npu-plugin/sdk/"
    'build_sdk.py --prefix "$VIRTUAL_ENV" (or set VNPU_LIBRARY to libvnpu.so)'
)


def _devices() -> list[str]:
    """SKUs of the devices present ([] where the runtime is not installed)."""
    from rmbuild_vendor_npu import capi

    try:
        return capi.load().devices()
    except capi.VnpuError:
        return []


def _sku(flags: dict[str, Any]) -> str:
    """The SKU a build targets: the flag, else this host's first device, else the default."""
    if flags.get("sku"):
        return str(flags["sku"])
    devices = _devices()
    return devices[0] if devices else DEFAULT_SKU


class VnpuBackend(BackendPlugin):
    name = "vnpu"
    extra = ""
    description = "VN-series NPU (fictional): vnpuc -> model.vnpu, run through libvnpu's C API"

    def availability(self) -> Availability:
        from rmbuild_vendor_npu import capi

        try:
            lib = capi.load()
        except capi.VnpuError as exc:
            return Availability(ok=False, reason=str(exc), install=INSTALL)
        return Availability(
            ok=True, versions={"libvnpu": lib.version, "abi": str(capi.ABI_VERSION)}
        )

    def probe(self) -> list[Resource]:
        return [
            Resource("npu", f"vnpu{i}", vendor="VN", attributes={"sku": sku})
            for i, sku in enumerate(_devices())
        ]

    def required_build_profiles(self) -> list[str]:
        return ["vnpu-compile"]

    def get_capability(self) -> dict[str, Any]:
        return {"devices": ["npu"], "kv_cache": "on device", "dtypes": ["float32"]}

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        # The blob is compiled for one SKU: that is what the key must say, whether the target
        # named it or the host's device chose it.
        return {"sku": _sku(flags)}

    def stage_flags(
        self, profile: BuildProfile, flags: dict[str, Any], input_dir: Path
    ) -> dict[str, Any]:
        # The template passes --sku only when the flag is set: fill it with the SKU the key
        # holds, so that vnpuc compiles for exactly that.
        return {"sku": _sku(flags)} if "sku" in flags and not flags["sku"] else {}

    def artifact_details(self, read: Callable[[str], bytes]) -> dict[str, Any]:
        from rmbuild_vendor_npu.runtime import BLOB, header

        try:
            return header(read(BLOB)[:80])
        except (KeyError, ValueError, OSError):
            return {}

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        sku = (metadata.get("fingerprint") or {}).get("sku")
        devices = _devices()
        if sku and sku not in devices:
            raise IncompatibleArtifact(
                f"compiled for a {sku}; this host's VN devices: {', '.join(devices) or 'none'}",
                hint="rebuild it here (`rmbuild compile ... --rebuild`, flag sku), or run it "
                f"on a host with a {sku}",
            )

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        from rmbuild.runtime.session import BackendSession, eos_ids
        from rmbuild.runtime.tokenizer import Tokenizer

        from rmbuild_vendor_npu.runtime import VnpuStep

        device = _device_index(options.get("device"))
        step = VnpuStep(artifact_dir, device)
        try:
            tokenizer = Tokenizer(artifact_dir)
        except BaseException:
            step.close()
            raise
        return BackendSession(
            step_fn=step,
            tokenizer=tokenizer,
            eos_token_ids=eos_ids(artifact_dir),
            info={"backend": self.name, "device": f"vnpu{device}"},
        )


def _device_index(value: Any) -> int:
    """``--device``: None, an index, or ``vnpuN``; one that is not here is exit 6."""
    devices = _devices()
    text = str(value if value is not None else 0).lower().removeprefix("vnpu")
    if not text.isdigit() or int(text) >= len(devices):
        raise IncompatibleArtifact(
            f"no VN device {value!r} here (devices: "
            f"{', '.join(f'vnpu{i} ({s})' for i, s in enumerate(devices)) or 'none'})",
            hint="drop --device, or name one of the devices above",
        )
    return int(text)
