"""FuriosaAI RNGD backend: ``fxb build`` in the provisioned ``furiosa`` toolchain.

One CLI stage, ``furiosa-rngd``: the HF folder -> ``model.fxb`` (a zip of EDF kernels and a
``manifest.json``; no weights) plus the HF files the server loads (config, tokenizer, weights,
carried; the store dedups them), so ``furiosa-llm serve DIR`` takes it as is once ``rmbuild
checkout <artifact> DIR`` has laid it out.

What keys an artifact: the toolchain's identity (lock digest, Python, furiosa-llm / tcc /
kernels / torch versions, and the probe's revisions), the keyed flags, and the fingerprint
below: the NPU target implied by TP, and the compiler revisions again, so that ``show`` says
them. Not byte-reproducible (docs/toolchains.md: uuid/created_at in the manifest, one buffer in some
EDFs): the key, not the bytes, is what identifies a build.

Running needs an RNGD card and its driver: ``check_compatible`` refuses here (exit 6) naming
the devices found and what would run it.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, Resource
from rmbuild.backends.furiosa import probe
from rmbuild.errors import IncompatibleArtifact

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain

FXB_FORMAT = "furiosa-fxb"
FACTS = "rngd.json"  # sidecar: the .fxb manifest's facts, read without the SDK


def fxb_facts(fxb: Path | IO[bytes]) -> dict[str, Any]:
    """The facts of a ``.fxb``'s ``manifest.json`` (zipfile only; no SDK)."""
    with zipfile.ZipFile(fxb) as zf:
        names = zf.namelist()
        manifest_name = next((n for n in names if n.endswith("manifest.json")), None)
        manifest = json.loads(zf.read(manifest_name)) if manifest_name else {}
    edfs = sorted(n for n in names if n.endswith(".edf"))
    return summarize(manifest, edfs)


def _kernel_files(value: Any) -> list[str]:
    """Every file name referenced anywhere inside the kernel map (its shape varies)."""
    found: list[str] = []
    if isinstance(value, dict):
        for item in value.values():
            found += _kernel_files(item)
    elif isinstance(value, list):
        for item in value:
            found += _kernel_files(item)
    elif isinstance(value, str) and value.endswith(".edf"):
        found.append(value)
    return found


def _bucket(entry: Any) -> str:
    """``{"attention": {"batch_size": 1, "attention_size": 128, ...}}`` -> ``attention b1 a128
    kv0``; ``{"tokenwise": {"input_size": 128}}`` -> ``tokenwise 128``."""
    bucket = entry.get("bucket", {}) if isinstance(entry, dict) else {}
    parts = []
    for kind, fields in bucket.items():
        if kind == "attention" and isinstance(fields, dict):
            parts.append(
                f"attention b{fields.get('batch_size')} a{fields.get('attention_size')} "
                f"kv{fields.get('kv_cache_size')}"
            )
        elif isinstance(fields, dict):
            parts.append(" ".join([kind, *(str(v) for v in fields.values())]))
    return ", ".join(parts) or json.dumps(bucket, sort_keys=True)


def summarize(manifest: dict[str, Any], edfs: list[str]) -> dict[str, Any]:
    """Versions with revisions, parallelism, buckets per kernel, and whether every kernel file
    the manifest names is inside the archive (fxb manifest format_version 2, 2026.4)."""
    kernels = manifest.get("kernels") or {}
    referenced = sorted(set(_kernel_files(kernels)))
    missing = [name for name in referenced if not any(e.endswith(name) for e in edfs)]
    buckets = (
        {
            name: [_bucket(e) for e in entries] if isinstance(entries, list) else []
            for name, entries in sorted(kernels.items())
        }
        if isinstance(kernels, dict)
        else {}
    )
    return {
        "format_version": manifest.get("format_version"),
        "versions": manifest.get("versions", {}),
        "parallel": manifest.get("parallel_config", {}),
        "model": manifest.get("model", {}),
        "kernels": buckets,
        "edf_files": edfs,
        "kernels_missing": missing,
        "byte_reproducible": False,
        "note": "not byte-reproducible: manifest uuid/created_at and some EDF buffers differ "
        "between identical builds; the action key identifies the build",
    }


class FuriosaBackend(BackendPlugin):
    name = "furiosa"
    extra = ""
    description = "FuriosaAI RNGD: fxb build (furiosa-llm 2026.4) -> .fxb + HF files"

    def availability(self) -> Availability:
        from rmbuild.toolrun import provision

        try:
            tc = probe.toolchain()
        except Exception as exc:  # noqa: BLE001 - must not raise
            return Availability(ok=False, reason=f"no furiosa toolchain file: {exc}")
        st = provision.status(tc)
        if not st.installed:
            return Availability(
                ok=False,
                reason=f"toolchain furiosa is {st.reason} (compiles need it; running needs an "
                "RNGD host)",
                install=f"rmbuild toolchain install {tc.name}",
            )
        packages = st.marker.get("packages", {})
        versions = {
            dist: packages[dist] for dist in (probe.LLM_DIST, probe.TCC_DIST) if dist in packages
        }
        return Availability(ok=True, versions=versions)

    def probe(self) -> list[Resource]:
        return probe.devices()

    def required_build_profiles(self) -> list[str]:
        return ["furiosa-rngd"]

    def get_capability(self) -> dict[str, Any]:
        return {"devices": ["npu"], "compile_only_here": True, "streaming": True}

    # ------------------------------------------------------------------ keys

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        tp, pp = int(flags.get("tp") or 1), int(flags.get("pp") or 1)
        fp: dict[str, Any] = {
            "npu": "rngd",
            "npu_target": probe.npu_target(tp, pp),
            "tp": tp,
            "pp": pp,
        }
        if toolchain is not None:
            # From the install marker: no process in the 7.7 GB environment on a hit.
            ident = toolchain.identity()
            packages = ident.get("packages") or {}
            fp["furiosa_llm"] = packages.get(probe.LLM_DIST)
            fp["furiosa_tcc"] = packages.get(probe.TCC_DIST)
            facts = ident.get("probe") or {}
            for name in (
                "furiosa_llm_git_version",
                "llm_native__git_full_hash",
                "llm_native__ir_version",
                "llm_native__ir_git_short_hash",
                "furiosa_tcc_version",
            ):
                if name in facts:
                    fp[name.replace("__", "_")] = facts[name]
        return fp

    def prepare_outputs(self, profile: BuildProfile, input_dir: Path, output_dir: Path) -> None:
        fxb = output_dir / "model.fxb"
        if fxb.is_file():
            facts = fxb_facts(fxb)
            (output_dir / FACTS).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")

    def artifact_details(self, read: Any) -> dict[str, Any]:
        """Facts for ``show``: the .fxb manifest summary (``read(rel)`` gives a file's bytes)."""
        # The .fxb itself, read now: the facts follow this rmbuild's reading of the manifest.
        try:
            return fxb_facts(io.BytesIO(read("model.fxb")))
        except Exception:  # noqa: BLE001 - no .fxb (another output layout): the sidecar
            try:
                return json.loads(read(FACTS))
            except Exception:  # noqa: BLE001
                return {}

    # ------------------------------------------------------------------ loading

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        from rmbuild.host.resources import discover

        found = discover()
        rngd = found["furiosa"]["devices"]
        if rngd:
            return
        others = [f"{d['class']}: {d['name']}" for d in found["devices"]] or ["no accelerators"]
        raise IncompatibleArtifact(
            "this is a FuriosaAI RNGD artifact (.fxb) and this machine has no RNGD device "
            "(no /dev/rngd*, furiosa_smi lists none)",
            context=[f"devices found: {', '.join(others)}; CPU only otherwise"],
            hint="on an RNGD host with furiosa-llm 2026.4: `rmbuild checkout <artifact> DIR` "
            "puts its files in DIR (model.fxb + the HF config, tokenizer and weights), then "
            "`furiosa-llm serve DIR` finds model.fxb next to the HF files",
        )

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        raise IncompatibleArtifact(
            "rmbuild does not run RNGD artifacts in-process yet",
            hint=f"serve it with `furiosa-llm serve {artifact_dir}` on an RNGD host",
        )
