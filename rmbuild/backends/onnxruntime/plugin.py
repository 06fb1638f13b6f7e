"""ONNX Runtime backend: runs exported and ORT-optimized ONNX graphs on the CPU.

Compatibility (docs/toolchains.md): a graph optimized at level ``all`` may hold CPU-specific
layouts and contrib ops of one release, so it needs the same ORT major.minor and a CPU with the
ISA it was built on; at ``extended`` or lower, any ORT at least as new as the builder loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, Resource, version_tuple
from rmbuild.backends.onnxruntime import probe
from rmbuild.errors import IncompatibleArtifact
from rmbuild.host.hostinfo import cpu_info

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain


class OnnxRuntimeBackend(BackendPlugin):
    name = "onnxruntime"
    extra = "onnx"
    description = "ONNX Runtime, CPU execution provider"

    def availability(self) -> Availability:
        version = probe.installed_version()
        if version is None:
            return Availability(
                ok=False,
                reason="onnxruntime is not installed",
                install=f"pip install 'rmbuild[{self.extra}]'",
            )
        return Availability(ok=True, versions={"onnxruntime": version})

    def probe(self) -> list[Resource]:
        return probe.probe()

    def required_build_profiles(self) -> list[str]:
        return ["onnx-export", "onnxruntime-cpu"]

    def get_capability(self) -> dict[str, Any]:
        return {"devices": ["cpu"], "kv_cache": True, "dynamic_shapes": True, "streaming": True}

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        # Only level "all" bakes the CPU's ISA into the graph; keying on it elsewhere would
        # split the cache across machines for nothing.
        if flags.get("opt_level") == "all":
            return {"cpu_isa": cpu_info()["isa"]}
        return {}

    def prepare_outputs(self, profile: BuildProfile, input_dir: Path, output_dir: Path) -> None:
        # Record the KV layout (heads, head dim, dtype, input order) from the graph
        # this stage wrote, so that no runtime has to guess it from config.json.
        from rmbuild.runtime import kvlayout

        kvlayout.record_onnx(output_dir / "model.onnx", output_dir)

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        built = (metadata.get("toolchain") or {}).get("packages", {}).get("onnxruntime")
        here = probe.installed_version()
        if here is None:
            raise IncompatibleArtifact(
                "onnxruntime is not installed on this machine",
                hint=f"pip install 'rmbuild[{self.extra}]'",
            )
        if metadata.get("stage") != "compile" or built is None:
            return  # a plain export is portable ONNX
        level = (metadata.get("flags") or {}).get("opt_level")
        if level == "all":
            if version_tuple(here)[:2] != version_tuple(built)[:2]:
                raise IncompatibleArtifact(
                    f"optimized at level 'all' with onnxruntime {built}; this machine has {here} "
                    "(level 'all' needs the same major.minor)",
                    hint="rebuild it here with `rmbuild compile`, or use opt_level: extended",
                )
            missing = set(metadata.get("fingerprint", {}).get("cpu_isa", [])) - set(
                cpu_info()["isa"]
            )
            if missing:
                raise IncompatibleArtifact(
                    f"optimized at level 'all' for a CPU with {sorted(missing)}, which this CPU "
                    "lacks",
                    hint="rebuild it here, or use opt_level: extended for portable graphs",
                )
        elif version_tuple(here) < version_tuple(built):
            raise IncompatibleArtifact(
                f"optimized with onnxruntime {built}, newer than this machine's {here}",
                hint=f"upgrade onnxruntime to >= {built}, or rebuild it here",
            )

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        device = str(options.get("device") or "cpu")
        if device.lower() != "cpu":
            raise IncompatibleArtifact(
                f"the onnxruntime backend runs on the CPU here, not on {device!r}",
                hint="drop --device, or build a target for that device",
            )
        # Only now: the runtime needs numpy, an extra.
        from rmbuild.backends.onnxruntime.runtime import OnnxDecoderStep
        from rmbuild.runtime.session import BackendSession, eos_ids
        from rmbuild.runtime.tokenizer import Tokenizer

        runtime_flags = {**(metadata.get("runtime_flags") or {}), **options}
        step = OnnxDecoderStep(artifact_dir / "model.onnx", runtime_flags)
        return BackendSession(
            step_fn=step,
            tokenizer=Tokenizer(artifact_dir),
            eos_token_ids=eos_ids(artifact_dir),
            info={"backend": self.name, "device": "cpu"},
        )
