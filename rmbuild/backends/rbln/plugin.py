"""Rebellions ATOM backend: optimum-rbln 0.12 in the ``rbln`` toolchain.

One Python stage, ``rbln-ca25``: the HF folder -> ``rmbuild/tools/rbln_compile.py`` ->
``from_pretrained(export=True, rbln_npu=SKU, rbln_create_runtimes=False, rbln_num_devices=,
rbln_batch_size=, rbln_max_seq_len=)`` + ``save_pretrained``: ``prefill.rbln``,
``decoder_batch_<b>.rbln``, ``rbln_config.json``, the HF config and tokenizer. Compile only,
on any host: an explicit SKU and no runtimes.

What keys an artifact (vllm-rbln PR#653: no compiler version in its key gave
stale hits after upgrades): the toolchain's identity (rebel-compiler, optimum-rbln, torch,
transformers versions), the keyed flags, and the fingerprint below: the SKU, num_devices,
batch size, max sequence length and the two SDK versions again, so that ``show`` and the load
check read them from one place.

Loading: the SKU and the device count are checked first, against ``rebel``'s own
answer in the toolchain (``get_npu_name``, ``device_count``), exit 6 naming found vs needed;
then optimum-rbln loads the folder with ``export=False`` (never a compile on load). vllm-rbln
serves the same folder: ``show`` prints the command with ``max_num_seqs``/``max_model_len``
taken from the artifact's ``rbln_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, Resource, version_tuple
from rmbuild.backends.rbln import probe
from rmbuild.errors import IncompatibleArtifact, SpecError

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain

RBLN_FORMAT = "rbln-compiled"
# optimum-rbln 0.12 renamed these (docs/toolchains.md); the old names are refused with the new one.
DEPRECATED_FLAGS = {"tensor_parallel_size": "num_devices"}


def serve_command(rbln_config: dict[str, Any], folder: str = "<materialized folder>") -> str:
    """The vllm-rbln command that serves a compiled folder, consistent with its
    ``rbln_config.json``: max_num_seqs = the compiled batch size, max_model_len = the compiled
    max_seq_len, block_size = the compiled KV-cache block (vllm-rbln requires it; equal to
    max_model_len selects its naive attention, a divisor its flash attention)."""
    batch = rbln_config.get("batch_size", 1)
    max_len = rbln_config.get("max_seq_len")
    block = rbln_config.get("kvcache_block_size") or max_len
    return (
        f"vllm serve {folder} --max-num-seqs {batch} --max-model-len {max_len} --block-size {block}"
    )


def artifact_facts(rbln_config: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """What ``show`` prints for an RBLN artifact, from its rbln_config.json and file list."""
    cfgs = rbln_config.get("_compile_cfgs") or []
    return {
        "cls_name": rbln_config.get("cls_name"),
        "optimum_rbln_version": rbln_config.get("optimum_rbln_version"),
        "npu": sorted({c.get("npu") for c in cfgs if c.get("npu")}),
        "num_devices": sorted({c.get("num_devices") for c in cfgs if c.get("num_devices")}),
        "batch_size": rbln_config.get("batch_size"),
        "max_seq_len": rbln_config.get("max_seq_len"),
        "kvcache_block_size": rbln_config.get("kvcache_block_size"),
        "decoder_batch_sizes": rbln_config.get("decoder_batch_sizes"),
        "compiled_models": [c.get("compiled_model_name") for c in cfgs],
        "rbln_files": sorted(files),
        "vllm_serve": serve_command(rbln_config),
        "load": "RBLN<Arch>.from_pretrained(<folder>, export=False, rbln_device=[0, ...])",
    }


class RBLNBackend(BackendPlugin):
    name = "rbln"
    extra = ""
    description = "Rebellions ATOM: optimum-rbln 0.12 -> prefill/decoder .rbln + rbln_config.json"

    def _toolchain(self, start: Path | None = None) -> Toolchain:
        return probe.toolchain(start)

    def availability(self) -> Availability:
        from rmbuild.toolrun import provision

        try:
            tc = self._toolchain(Path.cwd())
        except Exception as exc:  # noqa: BLE001 - must not raise
            return Availability(ok=False, reason=f"no rbln toolchain file: {exc}")
        st = provision.status(tc)
        vendor = (
            "rebel-compiler comes only from Rebellions' own index: install from the lock where "
            "that index is reachable, or point profiles/toolchains/rbln.yaml's `python:` at "
            "the RBLN SDK's environment"
        )
        if not st.installed:
            return Availability(
                ok=False,
                reason=f"toolchain rbln is {st.reason} (compiles need it; running needs an "
                "ATOM host)",
                install=f"{tc.install_hint()} ({vendor})",
            )
        try:
            packages = tc.identity()["packages"]
        except Exception as exc:  # noqa: BLE001 - a broken registered env
            return Availability(ok=False, reason=f"toolchain rbln: {exc}", install=vendor)
        assert isinstance(packages, dict)
        missing = [d for d in (probe.OPTIMUM_DIST, probe.COMPILER_DIST) if not packages.get(d)]
        if missing:
            return Availability(
                ok=False,
                reason=f"toolchain rbln lacks {', '.join(missing)}",
                install=vendor,
            )
        return Availability(
            ok=True,
            versions={d: packages[d] for d in (probe.OPTIMUM_DIST, probe.COMPILER_DIST)},
        )

    def probe(self) -> list[Resource]:
        return probe.devices()

    def required_build_profiles(self) -> list[str]:
        return ["rbln-ca25"]

    def get_capability(self) -> dict[str, Any]:
        return {"devices": ["npu"], "compile_only_here": True, "streaming": False}

    # ------------------------------------------------------------------ keys

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        where = profile.name if profile is not None else "rbln"
        # Refused here, before any tool runs (exit 3): the key is computed before the tool.
        for old, new in DEPRECATED_FLAGS.items():
            if flags.get(old) not in (None, "", 0):
                raise SpecError(
                    f"{old} is the deprecated name of {new} (optimum-rbln 0.12: "
                    f"rbln_{old} became rbln_{new})",
                    file=where,
                    field=f"flags.{old}",
                    hint=f"set `{new}: {flags[old]}` in the target's flags instead",
                )
        npu = flags.get("npu")
        if not npu:
            raise SpecError(
                "the RBLN target needs an explicit NPU SKU (rbln_npu): without one, the "
                "compiler asks the attached device, and a host without an NPU cannot compile",
                file=where,
                field="flags.npu",
                hint=f"set npu to one of {', '.join(probe.KNOWN_NPUS)}",
            )
        sku = probe.normalize_npu(str(npu))
        if sku not in probe.KNOWN_NPUS:
            raise SpecError(
                f"unknown RBLN NPU {npu!r}",
                file=where,
                field="flags.npu",
                hint=f"one of {', '.join(probe.KNOWN_NPUS)}",
            )
        fp: dict[str, Any] = {
            "npu": sku,
            "num_devices": int(flags.get("num_devices") or 1),
            "batch_size": int(flags.get("batch_size") or 1),
            # null: the model's max_position_embeddings (read by the tool from the keyed
            # config.json, so the key still decides it)
            "max_seq_len": flags.get("max_seq_len"),
        }
        if toolchain is not None:
            ident = toolchain.identity()
            packages = ident.get("packages") or {}
            assert isinstance(packages, dict)
            fp["rebel_compiler"] = packages.get(probe.COMPILER_DIST)
            fp["optimum_rbln"] = packages.get(probe.OPTIMUM_DIST)
            facts = ident.get("probe") or {}
            if isinstance(facts, dict) and facts.get("rebel_version"):
                fp["rebel_version"] = facts["rebel_version"]
        return fp

    def artifact_details(self, read: Any) -> dict[str, Any]:
        """Facts for ``show``: rbln_config.json's compile configs and the vllm-rbln command."""
        try:
            rbln_config = json.loads(read("rbln_config.json"))
        except Exception:  # noqa: BLE001 - another layout: nothing to add
            return {}
        # The .rbln names from the compile configs: never read a multi-GB graph for a listing.
        cfgs = rbln_config.get("_compile_cfgs") or []
        files = [f"{c.get('compiled_model_name')}.rbln" for c in cfgs]
        return artifact_facts(rbln_config, files)

    # ------------------------------------------------------------------ loading

    def _start(self, metadata: dict[str, Any]) -> Path | None:
        spec = metadata.get("spec_file")
        return Path(spec).parent if spec else Path.cwd()

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        fp = metadata.get("fingerprint") or {}
        need_npu = str(fp.get("npu") or "")
        need = int(fp.get("num_devices") or 1)
        facts: dict[str, Any] = {}
        try:
            facts = probe.sdk_devices(self._toolchain(self._start(metadata)))
        except Exception as exc:  # noqa: BLE001 - no toolchain: the device nodes only
            facts = {"error": str(exc)}
        if "error" in facts:
            from rmbuild.host.resources import rebellions

            nodes = rebellions()["nodes"]
            facts = {"count": len(nodes), "names": [None] * len(nodes), "source": "/dev/rbln*"}
        count = int(facts.get("count") or 0)
        names = [probe.normalize_npu(n) if n else "unknown SKU" for n in facts.get("names", [])]
        found = (
            f"{count} RBLN device(s): {', '.join(f'{i}: {n}' for i, n in enumerate(names))}"
            if count
            else "no RBLN device (rebel.device_count() is 0, no /dev/rbln*)"
        )
        target = metadata.get("target") or "<target>"
        spec = metadata.get("spec_file") or "model.yaml"
        if count < need:
            raise IncompatibleArtifact(
                f"this RBLN artifact needs {need} {need_npu} device(s); found {found}",
                context=[f"compiled for npu={need_npu}, num_devices={need}"],
                hint=(
                    f"run it on a host with {need} {need_npu} devices"
                    + (
                        f", or rebuild for {count}: set `num_devices: {count}` in target "
                        f"{target}'s flags and run `rmbuild compile {spec} --target {target}`"
                        if count
                        else ""
                    )
                ),
            )
        wrong = [(i, n) for i, n in enumerate(names[:need]) if n != need_npu]
        if wrong:
            got = ", ".join(f"device {i} is {n}" for i, n in wrong)
            raise IncompatibleArtifact(
                f"this RBLN artifact was compiled for {need_npu}; {got}",
                context=[f"found {found}"],
                hint=f"rebuild for this host: set `npu: {names[0]}` in target {target}'s flags "
                f"and run `rmbuild compile {spec} --target {target}`",
            )
        built = fp.get("rebel_compiler")
        here = facts.get("rebel_version")
        if built and here and version_tuple(str(built))[:2] != version_tuple(str(here))[:2]:
            raise IncompatibleArtifact(
                f"this RBLN artifact was compiled by rebel-compiler {built}; this host's "
                f"rebel is {here}",
                hint=f"rebuild it here: `rmbuild compile {spec} --target {target} --rebuild`",
            )

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        from rmbuild.backends.rbln.runtime import make_session

        fp = metadata.get("fingerprint") or {}
        devices = list(range(int(fp.get("num_devices") or 1)))
        tc = self._toolchain(self._start(metadata))
        info = {"backend": self.name, "device": f"{fp.get('npu')} {devices}"}
        return make_session(tc, artifact_dir, devices, info)
