"""NVIDIA TensorRT backend: ``trtexec`` builds an ONNX graph into a plan.

Two profiles, one per TensorRT major, because TensorRT 11 removed the precision flags
(NVIDIA's 10.x -> 11.x migration guide): ``tensorrt-fp16`` renders TensorRT 10's
``--fp16/--bf16/--int8``; ``tensorrt-strong`` renders 11's strongly typed build of an ONNX
graph that ModelOpt AutoCast (stage ``modelopt-autocast``) cast first. Each profile says the
major it renders for (``trt_major``) and the toolchain's trtexec says what it is (its banner):
a mismatch, and any precision flag for 11.x, is refused (exit 3) before any tool runs.

What keys a plan: the toolchain and trtexec by content, the flags (shapes, workspace,
optimization level, compatibility levels, TF32), and the fingerprint below: the building
TensorRT version, the GPU's compute capability (unless ``hardware_compatibility: ampere+``
widens it to "Ampere or newer"), the version-compatibility flag and the shape rule. The CUDA
driver is a floor, not a key: a newer driver runs the same plan, so upgrading it must not
rebuild; the build host's driver is recorded in ``trt.json``.

Loading: ``check_compatible`` compares the recorded facts with this host, then
``create_session`` reads the plan's header (:mod:`.planfile`) and compares it again, both before
``deserialize_cuda_engine``; a refusal (exit 6) names both versions or both compute
capabilities and the ``rmbuild compile ... --rebuild`` that makes one for this machine.

The timing cache is the compiler-cache artifact (:mod:`rmbuild.build.compcache`),
keyed by the toolchain plus TensorRT version and compute capability, passed to every build as
``--timingCacheFile``; a build that adds tactics stores a new one and the old one stays valid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, Resource, version_tuple
from rmbuild.backends.tensorrt import planfile, probe
from rmbuild.errors import BackendUnavailable, IncompatibleArtifact, SpecError, ToolError

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain

PLAN = "model.plan"
FACTS = "trt.json"  # sidecar: the plan header's version, the build GPU, the timing cache
PRECISION_FLAGS = ("--fp16", "--bf16", "--int8", "--fp8", "--best")
HW_LEVELS = ("none", "ampere+", "sameComputeCapability")
AMPERE = (8, 0)


def device_index(value: Any) -> int:
    """``0``, ``"1"``, ``"cuda:1"``, ``"GPU.1"`` -> the GPU's index; ``"GPU"``/None -> 0."""
    digits = "".join(ch for ch in str(value or "").rsplit(":", 1)[-1].rsplit(".", 1)[-1])
    return int(digits) if digits.isdigit() else 0


def _cc(value: Any) -> tuple[int, ...]:
    return version_tuple(str(value or "0"))


def _rebuild_hint(metadata: dict[str, Any]) -> str:
    spec = metadata.get("spec_file") or "model.yaml"
    target = metadata.get("target") or "<target>"
    return (
        f"build one for this machine: `rmbuild compile {spec} --target {target} --rebuild` "
        "(its TensorRT and GPU key a plan of their own; --rebuild runs trtexec again even "
        "where that key is stored)"
    )


class TensorRTBackend(BackendPlugin):
    name = "tensorrt"
    extra = "tensorrt"
    description = "NVIDIA TensorRT: trtexec ONNX -> plan (10.x fp16/bf16/int8, 11.x strongly typed)"
    # A timing cache only grows; the one a build was fed stays a valid artifact.
    compiler_cache_keeps_versions = True

    def availability(self) -> Availability:
        if not probe.module_found():
            return Availability(
                ok=False,
                reason="the tensorrt Python package is not installed (pip's tensorrt fetches "
                "its libraries from NVIDIA's index; trtexec is not in the wheels: compiles "
                "need toolchain tensorrt pointing at a TensorRT install)",
                install=f"pip install 'rmbuild[{self.extra}]'",
            )
        version = probe.installed_version()
        if version is None:
            return Availability(
                ok=False,
                reason="the tensorrt package is installed but does not import (a stub wheel "
                "whose libraries were not fetched from NVIDIA's index?)",
                install="pip install --extra-index-url https://pypi.nvidia.com tensorrt",
            )
        versions = {"tensorrt": version}
        if lib := probe.buffer_library():
            versions["buffers"] = lib
        return Availability(ok=True, versions=versions)

    def probe(self) -> list[Resource]:
        return probe.devices()

    def required_build_profiles(self) -> list[str]:
        return ["onnx-export", "tensorrt-fp16", "modelopt-autocast", "tensorrt-strong"]

    def get_capability(self) -> dict[str, Any]:
        return {"devices": ["gpu"], "kv_cache": True, "dynamic_shapes": True, "streaming": True}

    # ------------------------------------------------------------------ build side

    def _is_plan(self, profile: BuildProfile) -> bool:
        return profile.stage == "compile" and "trt_major" in profile.flags

    def _build_gpu(self, flags: dict[str, Any]) -> dict[str, Any]:
        index = device_index(flags.get("device"))
        gpu = probe.gpu(index)
        if gpu is None:
            found = probe.gpus()
            raise BackendUnavailable(
                f"TensorRT builds on the GPU it targets; no NVIDIA GPU {index} here "
                f"({len(found)} found through NVML/nvidia-smi)",
                hint="build on a host with the GPU (or one of its compute capability), or "
                "share the plan through a remote store",
            )
        return gpu

    def check_stage(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain
    ) -> None:
        """Refusals that need no tool run: called for every stage before the first runs."""
        if not self._is_plan(profile):
            return
        rendered = int(flags.get("trt_major") or 10)
        precision = flags.get("precision")
        if rendered >= 11 and precision not in (None, "fp32"):
            raise SpecError(
                f"profile {profile.name!r} renders for TensorRT {rendered}, which removed "
                f"{'/'.join(PRECISION_FLAGS)}: networks are strongly typed, so precision "
                f"{precision!r} cannot be a builder flag",
                field="flags.precision",
                file=profile.name,
                hint="cast the ONNX graph instead: stage modelopt-autocast "
                "(low_precision_type: fp16|bf16) runs before tensorrt-strong by default",
            )
        hw = flags.get("hardware_compatibility") or "none"
        if hw not in HW_LEVELS:
            raise SpecError(
                f"hardware_compatibility must be one of {', '.join(HW_LEVELS)} (got {hw!r})",
                field="flags.hardware_compatibility",
                file=profile.name,
            )
        try:
            version = probe.toolchain_version(profile, toolchain)
        except ToolError:
            return  # no trtexec here yet: the stage's own key says so, with the install hint
        if version is None:
            return
        major = version_tuple(version)[0]
        if major >= 11 and rendered < 11:
            raise SpecError(
                f"toolchain {toolchain.name!r} has TensorRT {version}, and TensorRT 11 "
                f"removed {'/'.join(PRECISION_FLAGS)} (networks are strongly typed); profile "
                f"{profile.name!r} renders TensorRT {rendered}'s precision flags "
                f"(precision: {precision})",
                field="flags.trt_major",
                file=profile.name,
                hint="use profile tensorrt-strong (a modelopt-autocast stage casts the ONNX "
                "to fp16/bf16 first), or point the toolchain at a TensorRT 10 install",
            )
        if major != rendered:
            raise SpecError(
                f"profile {profile.name!r} renders trtexec flags for TensorRT {rendered}, but "
                f"toolchain {toolchain.name!r} has TensorRT {version}",
                field="flags.trt_major",
                file=profile.name,
                hint="pick the profile for that major (tensorrt-fp16: 10, tensorrt-strong: "
                "11), or point the toolchain at the matching install",
            )

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        if not self._is_plan(profile):
            return {}
        from rmbuild.backends.tensorrt.shapes import SHAPE_RULE

        if toolchain is not None:
            self.check_stage(profile, flags, toolchain)
        version = probe.toolchain_version(profile, toolchain) if toolchain else None
        if version is None:
            raise SpecError(
                f"cannot tell the TensorRT version of toolchain "
                f"{toolchain.name if toolchain else '?'!r}",
                field="tool.version_command",
                file=profile.name,
                hint="give the profile tool.version_command: [trtexec, --help] (its banner "
                "names the version), or list tensorrt in the toolchain's packages",
            )
        gpu = self._build_gpu(flags)
        hw = flags.get("hardware_compatibility") or "none"
        fp: dict[str, Any] = {
            "tensorrt": version,
            "tensorrt_major": version_tuple(version)[0],
            "hardware_compatibility": hw,
            "version_compatible": bool(flags.get("version_compatible")),
            "shape_rule": SHAPE_RULE,
        }
        if hw == "ampere+":
            # One plan for every Ampere-or-newer GPU: the exact CC would split it for nothing.
            if _cc(gpu["compute_capability"]) < AMPERE:
                raise SpecError(
                    f"hardware_compatibility ampere+ needs an Ampere or newer GPU to build on; "
                    f"GPU {gpu.get('name')} has compute capability {gpu['compute_capability']}",
                    field="flags.hardware_compatibility",
                    file=profile.name,
                )
            fp["compute_capability_min"] = "8.0"
        else:
            fp["compute_capability"] = str(gpu["compute_capability"])
        calib = flags.get("calibration_cache")
        if calib and flags.get("precision") == "int8":
            # The calibration table decides the int8 scales: keyed by content, not by path.
            path = Path(str(calib)).expanduser()
            try:
                fp["calibration_cache_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                raise SpecError(
                    f"calibration cache {calib!r} cannot be read: {exc.strerror or exc}",
                    field="flags.calibration_cache",
                    file=profile.name,
                ) from None
        return fp

    def compiler_cache_facts(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain
    ) -> dict[str, Any]:
        """The timing cache's key beyond the toolchain: TensorRT version + the build GPU's
        compute capability (always exact: timings are of this GPU)."""
        if not self._is_plan(profile):
            return {}
        return {
            "tensorrt": probe.toolchain_version(profile, toolchain),
            "compute_capability": str(self._build_gpu(flags)["compute_capability"]),
        }

    def stage_flags(
        self, profile: BuildProfile, flags: dict[str, Any], input_dir: Path
    ) -> dict[str, Any]:
        """trtexec's --minShapes/--optShapes/--maxShapes from the graph's inputs and the
        declared max batch and sequence, where the target did not give them."""
        names = ("min_shapes", "opt_shapes", "max_shapes")
        if not self._is_plan(profile) or not all(n in flags for n in names):
            return {}
        given = [n for n in names if flags.get(n)]
        if len(given) == 3:
            return {}
        if given:
            raise SpecError(
                f"give all of min_shapes, opt_shapes and max_shapes or none (got only "
                f"{', '.join(given)})",
                field=f"flags.{given[0]}",
                file=profile.name,
            )
        from rmbuild.backends.tensorrt import shapes

        derived = shapes.derive(
            shapes.layout_of(input_dir),
            max_batch=int(flags.get("max_batch") or 1),
            max_seq=int(flags.get("max_seq") or 256),
            opt_batch=flags.get("opt_batch"),
            opt_past=flags.get("opt_past"),
        )
        return derived.as_flags()

    def prepare_outputs(self, profile: BuildProfile, input_dir: Path, output_dir: Path) -> None:
        from rmbuild.runtime import kvlayout

        if not self._is_plan(profile):
            # The AutoCast ONNX: its layout as cast (dtypes may change); the carried
            # kv_layout.json stays where the onnx package is missing or cannot read it
            # (trtexec, next, reads the graph itself and says what is wrong).
            try:
                kvlayout.record_onnx(output_dir / "model.onnx", output_dir)
            except Exception:  # noqa: BLE001
                pass
            return
        plan = output_dir / PLAN
        try:
            header = planfile.read_header(plan)
        except (OSError, planfile.PlanHeaderError) as exc:
            raise ToolError(
                f"trtexec exited 0 but {PLAN} is not a TensorRT plan: {exc}",
                tool="trtexec",
            ) from None
        facts: dict[str, Any] = {
            "plan": PLAN,
            "tensorrt": header.version,
            "tensorrt_build": header.build,
            "build_gpus": [
                {k: g.get(k) for k in ("name", "compute_capability", "driver")}
                for g in probe.gpus()
            ],
        }
        # The timing cache this build left (the compiler-cache folder of its work dir).
        cache = output_dir.parent / "compiler-cache" / "timing.cache"
        if cache.is_file():
            data = cache.read_bytes()
            facts["timing_cache"] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
        (output_dir / FACTS).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")

    def artifact_details(self, read: Any) -> dict[str, Any]:
        """Facts for ``show``: the plan header's version (read from the plan itself), the
        build GPU and the timing cache (``read(rel)`` gives a file's bytes)."""
        details: dict[str, Any] = {}
        try:
            details.update(json.loads(read(FACTS)))
        except Exception:  # noqa: BLE001 - an AutoCast ONNX artifact has no sidecar
            return {}
        try:
            header = planfile.parse_header(read(PLAN)[: planfile.HEADER_BYTES])
            details["tensorrt"] = header.version
            details["header"] = f"magic 0x{planfile.MAGIC:08x}, built by {header.full_version}"
        except Exception as exc:  # noqa: BLE001
            details["header"] = f"unreadable: {exc}"
        return details

    # ------------------------------------------------------------------ load side

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        if metadata.get("stage") != "compile":
            raise IncompatibleArtifact(
                "this is the ONNX graph ModelOpt AutoCast cast for TensorRT, not a plan",
                hint="build the tensorrt-strong target from it and run that artifact",
            )
        fp = metadata.get("fingerprint") or {}
        flags = {**(metadata.get("flags") or {}), **(metadata.get("runtime_flags") or {})}
        built = str(fp.get("tensorrt") or "")
        here = probe.installed_version()
        if here is None:
            raise IncompatibleArtifact(
                "the tensorrt Python package is not installed here",
                hint=f"pip install 'rmbuild[{self.extra}]'",
            )
        check_version(built, here, bool(fp.get("version_compatible")), metadata, "recorded")
        index = device_index(flags.get("device"))
        gpu = probe.gpu(index)
        if gpu is None:
            raise IncompatibleArtifact(
                f"this TensorRT plan runs on an NVIDIA GPU; there is no GPU {index} here",
                context=[f"GPUs found: {len(probe.gpus())} (NVML/nvidia-smi)"],
                hint="run it on a host with the GPU it was built for",
            )
        check_gpu(fp, gpu, metadata)

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        # The header, before any byte reaches deserialize_cuda_engine.
        plan = artifact_dir / PLAN
        try:
            header = planfile.read_header(plan)
        except (OSError, planfile.PlanHeaderError) as exc:
            raise IncompatibleArtifact(f"{PLAN}: {exc}", hint=_rebuild_hint(metadata)) from None
        here = probe.runtime_version()
        if here is None:
            raise IncompatibleArtifact(
                "the tensorrt module does not import here",
                hint=f"pip install 'rmbuild[{self.extra}]'",
            )
        fp = metadata.get("fingerprint") or {}
        check_version(
            header.version, here, bool(fp.get("version_compatible")), metadata, "plan header"
        )
        from rmbuild.backends.tensorrt.runtime import TensorRTDecoderStep
        from rmbuild.runtime import kvlayout
        from rmbuild.runtime.session import BackendSession, eos_ids
        from rmbuild.runtime.tokenizer import Tokenizer

        flags = {**(metadata.get("runtime_flags") or {}), **options}
        layout = kvlayout.read_sidecar(artifact_dir)
        if layout is None:
            raise IncompatibleArtifact(
                f"the artifact has no {kvlayout.SIDECAR} (the graph's inputs)",
                hint=_rebuild_hint(metadata),
            )
        device = device_index(flags.get("device"))
        step = TensorRTDecoderStep(
            plan,
            layout,
            device=device,
            buffers=options.get("buffers"),
            version_compatible=bool(fp.get("version_compatible")),
        )
        return BackendSession(
            step_fn=step,
            tokenizer=Tokenizer(artifact_dir),
            eos_token_ids=eos_ids(artifact_dir),
            info={"backend": self.name, "device": f"cuda:{device}", "tensorrt": here},
        )


# NVIDIA's rules for a plan built with the version-compatible flag (``--versionCompatible``),
# which embeds the lean runtime in the plan:
# https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/version-compatibility.html
# - "supported from version 8.6; the plan must be built with a version at least 8.6 or higher,
#   and the runtime must be 8.6 or higher"; it runs on the same or a later TensorRT, never an
#   earlier one ("engines built with version compatibility enabled using TensorRT 11.0 will be
#   compatible with TensorRT 11.1 and later 11.x versions");
# - across majors, only the pairs NVIDIA lists: "engines built with TensorRT 8 work with
#   TensorRT 9 and TensorRT 10 runtimes" (that page, for 10.x), and for 11.x "Two combinations
#   are supported across major versions: TensorRT 10 version-compatible engines can run with a
#   TensorRT 11 runtime, and TensorRT 8 version-compatible engines can run with a TensorRT 10
#   runtime. No other combination across major versions is supported"
#   (https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/getting-started/support-matrix.html).
VERSION_COMPATIBLE_SINCE = (8, 6)
CROSS_MAJOR = frozenset({(8, 9), (8, 10), (9, 10), (10, 11)})


def version_compatible_loads(built: str, here: str) -> bool:
    """Whether TensorRT ``here`` may load a plan built by ``built`` with ``--versionCompatible``
    (the rules above)."""
    b, h = version_tuple(built), version_tuple(here)
    if b[:2] < VERSION_COMPATIBLE_SINCE or h[:2] < VERSION_COMPATIBLE_SINCE:
        return False
    if b[0] == h[0]:
        return h[:3] >= b[:3]
    return (b[0], h[0]) in CROSS_MAJOR


def check_version(
    built: str, here: str, version_compatible: bool, metadata: dict[str, Any], source: str
) -> None:
    """Exit 6 unless TensorRT ``here`` may deserialize a plan built by ``built``: the same
    release, or with ``--versionCompatible`` a later one NVIDIA documents as able to load it."""
    if version_compatible:
        ok = version_compatible_loads(built, here)
        rule = (
            "built --versionCompatible: NVIDIA's plans of that kind load on the same or a later "
            "TensorRT of the same major (8.6 on), or across majors 8 -> 9/10, 9 -> 10, 10 -> 11"
        )
    else:
        ok = planfile.same_release(built, here)
        rule = "a plan needs the exact TensorRT release that built it"
    if not ok:
        raise IncompatibleArtifact(
            f"this plan was built by TensorRT {built} ({source}); this machine has TensorRT {here}",
            context=[rule],
            hint=_rebuild_hint(metadata),
        )


def check_gpu(fp: dict[str, Any], gpu: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Exit 6 unless ``gpu`` can run the plan: same compute capability, or with
    ``hardware_compatibility: ampere+`` any Ampere-or-newer GPU."""
    here = str(gpu.get("compute_capability"))
    if fp.get("hardware_compatibility") == "ampere+":
        if _cc(here) >= AMPERE:
            return
        raise IncompatibleArtifact(
            f"this plan was built with hardwareCompatibilityLevel=ampere+ (compute capability "
            f">= 8.0); GPU {gpu.get('name')} has compute capability {here}",
            hint=_rebuild_hint(metadata),
        )
    built = str(fp.get("compute_capability"))
    if _cc(built) != _cc(here):
        raise IncompatibleArtifact(
            f"this plan was built for compute capability {built}; GPU {gpu.get('name')} here "
            f"has compute capability {here}",
            context=[
                "a plan's kernels are for the GPU it was built on, unless it was built with "
                "hardware_compatibility: ampere+"
            ],
            hint=_rebuild_hint(metadata),
        )
