"""OpenVINO backend: ONNX -> IR with ``ovc``; generation through ``libopenvino_c`` (ctypes).

Compatibility (docs/toolchains.md): an IR loads in the OpenVINO release that wrote it or a
newer one, so an artifact converted by a newer ``ovc`` than the runtime here is refused. The IR
itself is device-independent: the device (``CPU``, ``GPU``, ``NPU``) is a runtime flag, and a
device this machine lacks is refused naming the ones it has (``rmbuild run --device`` overrides
it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, Resource, version_tuple
from rmbuild.backends.openvino import probe
from rmbuild.errors import IncompatibleArtifact

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain

IR_FILE = "openvino_model.xml"
RUNTIMES = ("capi", "python")


def _runtime_flags(
    metadata: dict[str, Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    flags = {**(metadata.get("runtime_flags") or {})}
    flags.update({k: v for k, v in (options or {}).items() if v is not None})
    return flags


class OpenVINOBackend(BackendPlugin):
    name = "openvino"
    extra = "openvino"
    description = "OpenVINO IR (ovc), run through libopenvino_c on CPU, GPU or NPU"

    def availability(self) -> Availability:
        version = probe.installed_version()
        install = f"pip install 'rmbuild[{self.extra}]'"
        if version is None:
            return Availability(ok=False, reason="openvino is not installed", install=install)
        # Only now: the binding needs numpy, which comes with the openvino extra.
        from rmbuild.backends.openvino import capi

        try:
            library = probe.library_path()
        except capi.OVLibraryNotFound as exc:
            return Availability(
                ok=False, reason=exc.message, install=install, versions={"openvino": version}
            )
        return Availability(ok=True, versions={"openvino": version, "libopenvino_c": library.name})

    def probe(self) -> list[Resource]:
        if not self.availability().ok:
            return []
        return probe.probe()

    def required_build_profiles(self) -> list[str]:
        return ["onnx-export", "openvino-cpu", "openvino-gpu", "openvino-npu"]

    def get_capability(self) -> dict[str, Any]:
        return {
            "devices": ["cpu", "gpu", "npu"],
            "kv_cache": True,
            "dynamic_shapes": True,
            "streaming": True,
            "runtimes": list(RUNTIMES),
        }

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        # The IR depends on the ovc release (keyed through the toolchain's openvino version) and
        # on weight compression and input shapes (keyed flags). It does not depend on the device
        # or this CPU: device code is generated at load time. Nothing else to add.
        return {}

    def prepare_outputs(self, profile: BuildProfile, input_dir: Path, output_dir: Path) -> None:
        # Record the KV layout, with every name of every input port, from the
        # IR ovc wrote; the runtimes read it instead of guessing from config.json.
        from rmbuild.backends.openvino import irlayout

        irlayout.record(output_dir / IR_FILE, output_dir)

    def _here_version(self, runtime: str) -> str:
        """The OpenVINO release that will read the IR: the C library's, or the package's."""
        if runtime == "python":
            version = probe.installed_version()
            if version is None:
                raise IncompatibleArtifact(
                    "openvino is not installed on this machine",
                    hint=f"pip install 'rmbuild[{self.extra}]'",
                )
            return version
        from rmbuild.backends.openvino.runtime import library_version

        return library_version()

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        flags = _runtime_flags(metadata)
        runtime = str(flags.get("runtime") or "capi")
        if runtime not in RUNTIMES:
            raise IncompatibleArtifact(
                f"unknown OpenVINO runtime {runtime!r}", hint=f"use one of: {', '.join(RUNTIMES)}"
            )
        here = self._here_version(runtime)
        built = ((metadata.get("toolchain") or {}).get("packages") or {}).get("openvino")
        if built and version_tuple(here) < version_tuple(built):
            raise IncompatibleArtifact(
                f"converted to IR with openvino {built}, newer than this machine's OpenVINO "
                f"{here} (an IR loads only in the release that wrote it or a newer one)",
                hint=f"upgrade: pip install 'openvino>={built}', or rebuild it here with "
                "`rmbuild compile`",
            )
        from rmbuild.backends.openvino.devices import check_device
        from rmbuild.backends.openvino.runtime import available_devices

        device = str(flags.get("device") or "CPU")
        check_device(device, available_devices())

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        from rmbuild.backends.openvino.runtime import OVCApiDecoderStep, OVPythonDecoderStep
        from rmbuild.runtime.session import BackendSession, eos_ids
        from rmbuild.runtime.tokenizer import Tokenizer

        flags = _runtime_flags(metadata, options)
        runtime = str(flags.get("runtime") or "capi")
        if runtime not in RUNTIMES:
            raise IncompatibleArtifact(
                f"unknown OpenVINO runtime {runtime!r}", hint=f"use one of: {', '.join(RUNTIMES)}"
            )
        step_class = OVPythonDecoderStep if runtime == "python" else OVCApiDecoderStep
        # The step checks the (possibly overridden) device against the devices present before
        # compiling, and raises IncompatibleArtifact naming them.
        step = step_class(artifact_dir / IR_FILE, flags)
        try:
            tokenizer = Tokenizer(artifact_dir)
        except BaseException:
            step.close()
            raise
        return BackendSession(
            step_fn=step,
            tokenizer=tokenizer,
            eos_token_ids=eos_ids(artifact_dir),
            info={"backend": self.name, "device": step.device, "runtime": runtime},
        )
