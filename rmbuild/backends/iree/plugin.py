"""IREE backend: ahead-of-time compiled ``.vmfb`` modules run through ``iree.runtime``.

Two CLI stages, each keyed and cached on its own: ``iree-import`` (``iree-import-onnx``,
ONNX -> MLIR, shared by every IREE target) and ``iree-cpu`` / ``iree-cuda`` (``iree-compile``,
MLIR -> .vmfb).

What keys a .vmfb (fingerprint): the target as ``iree-compile`` resolves it. For llvm-cpu,
``--iree-llvmcpu-target-cpu=host`` hides what was targeted, so the key holds the LLVM CPU name and
feature list iree-compile derives for ``host`` on the building machine (two machines whose CPUs
resolve alike share artifacts; an AVX-512 host and an AVX2 host do not). For cuda, the sm_XX arch
and PTX version the target name resolves to. The compiler version is keyed through the toolchain.

Compatibility at load (docs/toolchains.md): the same IREE release (the runtime's version equals the
recorded compiler version: the bytecode is not stable across releases), host CPU features a
superset of the compiled ones (llvm-cpu), and a CUDA device of the compiled arch or newer (cuda:
kernels are embedded as PTX, which the driver JIT-compiles forward).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, Resource
from rmbuild.backends.iree import probe
from rmbuild.errors import IncompatibleArtifact, SpecError, ToolError, ToolNotFound
from rmbuild.host.hostinfo import cpu_info

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain

VMFB_FORMAT = "iree-vmfb"


def _release(version: str) -> str:
    # The public version: a local "+cpu"-style suffix is a build label, not another release.
    return version.split("+")[0].strip()


def _sm(arch: str) -> tuple[int, bool]:
    """``sm_90a`` -> (90, True): the number, and whether it is an arch-specific ('a') target."""
    match = re.fullmatch(r"sm_(\d+)([a-z]?)", arch.strip())
    if match is None:
        return (-1, False)
    return int(match.group(1)), bool(match.group(2))


def _driver_and_device(device: Any, driver: str) -> tuple[str, str | None]:
    """``--device`` may be a generic kind (cpu, gpu), an IREE driver (local-task, local-sync,
    cuda) or a device URI (cuda://0): return the driver and, for a URI, the device."""
    if not device:
        return driver, None
    text = str(device)
    kind = text.lower()
    if kind == "cpu":
        return "local-task", None
    if kind in ("gpu", "cuda"):
        return "cuda", None
    if "://" in text:
        return text.split("://")[0], text
    return text, None


def _resolve_failed(tool: Path, exc: BaseException) -> ToolError:
    return ToolError(
        f"could not ask {tool.name} which target it compiles for: {str(exc)[:300]}",
        tool=tool.name,
        hint="the target is part of the action key; check that iree-compile runs",
    )


class IREEBackend(BackendPlugin):
    name = "iree"
    extra = "iree"
    description = "IREE: ahead-of-time compiled .vmfb on CPU (llvm-cpu) and NVIDIA GPUs (cuda)"

    def availability(self) -> Availability:
        version = probe.runtime_version()
        if version is None:
            return Availability(
                ok=False,
                reason="iree-base-runtime is not installed",
                install=f"pip install 'rmbuild[{self.extra}]'",
            )
        versions = {probe.RUNTIME_DIST: version}
        if compiler := probe.compiler_version():
            versions[probe.COMPILER_DIST] = compiler
        return Availability(ok=True, versions=versions)

    def probe(self) -> list[Resource]:
        return probe.probe()

    def required_build_profiles(self) -> list[str]:
        return ["onnx-export", "iree-import", "iree-cpu", "iree-cuda"]

    def get_capability(self) -> dict[str, Any]:
        return {
            "devices": ["cpu", "cuda"],
            "kv_cache": True,
            "dynamic_shapes": True,
            "streaming": True,
        }

    # ------------------------------------------------------------------ build

    def prepare_outputs(self, profile: BuildProfile, input_dir: Path, output_dir: Path) -> None:
        # The compiled function takes its arguments positionally and keeps no names, and the
        # exporters order them differently (Llama: input_ids, attention_mask, position_ids,
        # past...; GPT-2: input_ids, past..., attention_mask, position_ids). The import stage
        # records the ONNX graph's order next to the MLIR (io.json), and its KV layout (order,
        # KV heads, head dim, dtype: kv_layout.json); the compile stages keep both.
        import json
        import shutil

        from rmbuild.runtime import kvlayout

        if profile.output_format != "mlir":
            # A compile stage: its input is the import's tree, which holds the sidecar.
            recorded = input_dir / kvlayout.SIDECAR
            if recorded.is_file() and not (output_dir / kvlayout.SIDECAR).exists():
                shutil.copyfile(recorded, output_dir / kvlayout.SIDECAR)
            return
        model = input_dir / "model.onnx"
        if not model.is_file():
            return
        import onnx

        graph = onnx.load(str(model), load_external_data=False).graph
        initializers = {init.name for init in graph.initializer}
        io = {
            "inputs": [i.name for i in graph.input if i.name not in initializers],
            "outputs": [o.name for o in graph.output],
        }
        (output_dir / "io.json").write_text(json.dumps(io, indent=1) + "\n")
        kvlayout.record_onnx(model, output_dir)

    # ------------------------------------------------------------------ keys

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        if profile.output_format != VMFB_FORMAT:
            return {}  # the import is target-independent; the toolchain version keys it
        # Ask the very iree-compile the stage will run (its toolchain's), never another one.
        if toolchain is not None:
            try:
                tool: Path | None = toolchain.which("iree-compile")
            except ToolNotFound:
                tool = None  # the build itself will say so
        else:
            tool = probe.find_iree_compile(profile.toolchain)
        if "cuda_target" in flags:
            return self._cuda_fingerprint(profile, flags, tool)
        return self._cpu_fingerprint(flags, tool)

    def _cuda_fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], tool: Path | None
    ) -> dict[str, Any]:
        target = str(flags["cuda_target"])
        fp: dict[str, Any] = {"target_device": "cuda", "cuda_target": target}
        if tool is None:
            return fp
        try:
            resolved = probe.resolve_cuda(tool, target, flags.get("cuda_target_features"))
        except probe.TargetNotKnown:
            raise SpecError(
                f"iree-compile {probe.compiler_version() or ''} does not know the CUDA target "
                f'{target!r} ("missing GPU target")',
                file=profile.name,
                field="flags.cuda_target",
                hint="use an sm_XX it knows (sm_80 PTX also runs on newer GPUs), or an arch name "
                "such as ampere or ada",
            ) from None
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise _resolve_failed(tool, exc) from None
        fp.update(arch=resolved["arch"], ptx=resolved["features"])
        return fp

    def _cpu_fingerprint(self, flags: dict[str, Any], tool: Path | None) -> dict[str, Any]:
        cpu = str(flags.get("target_cpu") or "host")
        features = flags.get("target_cpu_features") or None
        triple = flags.get("target_triple") or None
        if tool is not None:
            try:
                return probe.resolve_llvmcpu(tool, cpu, features, triple)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                # A key from a degraded guess would differ from the real one: refuse instead.
                raise _resolve_failed(tool, exc) from None
        # No compiler to ask (the build will fail saying so): key on what /proc says.
        fp: dict[str, Any] = {
            "target_device": "local",
            "backend": "llvm-cpu",
            "target_cpu": cpu,
            "target_cpu_features": features,
            "target_triple": triple,
        }
        if cpu == "host" or features == "host":
            info = cpu_info()
            fp["host"] = {"arch": info["arch"], "model": info["model"], "isa": info["isa"]}
        return fp

    # ------------------------------------------------------------------ loading

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        fmt = metadata.get("output_format")
        if fmt != VMFB_FORMAT:
            raise IncompatibleArtifact(
                f"artifact of profile {metadata.get('profile')!r} is {fmt!r}, an intermediate "
                "IREE stage, not a compiled .vmfb: there is nothing to run",
                hint="build a target whose profile is iree-cpu or iree-cuda and run that",
            )
        here = probe.runtime_version()
        if here is None:
            raise IncompatibleArtifact(
                "the IREE runtime is not installed on this machine",
                hint=f"pip install 'rmbuild[{self.extra}]'",
            )
        packages = (metadata.get("toolchain") or {}).get("packages") or {}
        built = packages.get(probe.COMPILER_DIST)
        if built and _release(built) != _release(here):
            raise IncompatibleArtifact(
                f"compiled with IREE {built} (iree-base-compiler); this machine's IREE runtime "
                f"is {here}: a .vmfb runs only on the same IREE release",
                hint=f"rebuild it here with `rmbuild compile`, or install "
                f"iree-base-runtime=={built}",
            )
        fp = metadata.get("fingerprint") or {}
        if fp.get("target_device") == "cuda":
            self._check_cuda(fp)
        else:
            self._check_cpu(fp)

    def _check_cpu(self, fp: dict[str, Any]) -> None:
        fmt = fp.get("format")
        if fmt and fmt != probe.host_format():
            raise IncompatibleArtifact(
                f"compiled for {fmt}; this machine runs {probe.host_format()}",
                hint="rebuild it here with `rmbuild compile`",
            )
        wanted = set(fp.get("cpu_features") or [])
        if wanted:
            have = probe.host_llvm_features()
            checkable = probe.checkable_features()
            if checkable is not None:  # no iree-compile here: only what /proc/cpuinfo shows
                wanted &= checkable
            missing = sorted(wanted - have)
        elif "host" in fp:  # keyed without a compiler: compare /proc/cpuinfo ISA sets
            missing = sorted(set(fp["host"].get("isa") or []) - set(cpu_info()["isa"]))
        else:
            missing = []
        if missing:
            raise IncompatibleArtifact(
                f"compiled for CPU {fp.get('cpu') or fp.get('target_cpu')!r} with features this "
                f"CPU lacks: {', '.join(missing)}",
                context=[f"this CPU: {cpu_info()['model']}"],
                hint="rebuild it here (target_cpu: host), or build for a portable target_cpu "
                "such as x86-64-v2 / x86-64-v3 that every machine you run on has",
            )

    def _check_cuda(self, fp: dict[str, Any]) -> None:
        arch = str(fp.get("arch") or fp.get("cuda_target") or "?")
        devices, reason = probe.cuda_devices()
        if not devices:
            raise IncompatibleArtifact(
                f"built for CUDA {arch}; this machine has no CUDA device"
                + (f" ({reason})" if reason else ""),
                hint=f"run it on a machine with an NVIDIA GPU of {arch} or newer, or build an "
                "iree-cpu target for this one",
            )
        want, exact = _sm(arch)
        known = [d for d in devices if "arch" in d]
        if want < 0 or not known:
            return  # an arch name we cannot compare, or no nvidia-smi: let the driver decide
        fits = [
            d for d in known if (_sm(d["arch"])[0] == want if exact else _sm(d["arch"])[0] >= want)
        ]
        if not fits:
            have = ", ".join(f"{d['name']} ({d['arch']})" for d in known)
            raise IncompatibleArtifact(
                f"built for CUDA {arch}; this machine's CUDA devices are {have}",
                hint="rebuild with flags: {cuda_target: <their sm_XX>}",
            )

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        from rmbuild.backends.iree.runtime import IREEDecoderStep
        from rmbuild.runtime.session import BackendSession, eos_ids
        from rmbuild.runtime.tokenizer import Tokenizer

        runtime_flags = {**(metadata.get("runtime_flags") or {}), **options}
        fp = metadata.get("fingerprint") or {}
        target = "cuda" if fp.get("target_device") == "cuda" else "local"
        driver, device = _driver_and_device(
            runtime_flags.get("device"),
            str(runtime_flags.get("driver") or ("cuda" if target == "cuda" else "local-task")),
        )
        if (driver.split("://")[0] == "cuda") != (target == "cuda"):
            raise IncompatibleArtifact(
                f"this .vmfb was compiled for IREE's {target} device; it cannot run on "
                f"{device or driver!r}",
                hint="build the target for that device (iree-cpu or iree-cuda)",
            )
        step = IREEDecoderStep(
            artifact_dir / "model.vmfb", driver=driver, device=device, options=runtime_flags
        )
        return BackendSession(
            step_fn=step,
            tokenizer=Tokenizer(artifact_dir),
            eos_token_ids=eos_ids(artifact_dir),
            info={"backend": self.name, "device": device or driver},
        )
