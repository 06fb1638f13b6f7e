"""A stored artifact as the handoff bundles read it: laid out read-only from the store, with
the facts the engines need (its config, graph layout, compiled context limit, precision), and
the refusals every engine module shares."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.errors import IncompatibleArtifact
from rmbuild.runtime import kvlayout, limits

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store


@dataclass
class Artifact:
    """A stored artifact laid out read-only (``tree``), with what the engines read of it."""

    record: ArtifactRecord
    tree: Path
    files: dict[str, str]  # relpath -> sha256, from the manifest
    store: Store

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def metadata(self) -> dict[str, Any]:
        return self.record.metadata

    @property
    def backend(self) -> str:
        return self.record.backend

    @property
    def model(self) -> str:
        return self.record.model

    @property
    def target(self) -> str:
        return self.record.target

    @property
    def flags(self) -> dict[str, Any]:
        return dict(self.metadata.get("flags") or {})

    @property
    def fingerprint(self) -> dict[str, Any]:
        return dict(self.metadata.get("fingerprint") or {})

    @property
    def packages(self) -> dict[str, str]:
        """The toolchain's package versions the artifact was built with."""
        return dict((self.metadata.get("toolchain") or {}).get("packages") or {})

    @property
    def label(self) -> str:
        return f"{self.model}:{self.target} ({self.key[:12]}, {self.backend})"

    def read_json(self, rel: str) -> dict[str, Any] | None:
        """A JSON file of the artifact, or None where it has none (or it is not an object)."""
        if rel not in self.files:
            return None
        try:
            data = json.loads((self.tree / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def config(self) -> dict[str, Any]:
        return self.read_json("config.json") or {}

    def layout(self) -> kvlayout.KVLayout | None:
        """The graph's inputs as the build recorded them (``kv_layout.json``), where it did."""
        data = self.read_json(kvlayout.SIDECAR)
        if data is None:
            return None
        try:
            return kvlayout.KVLayout.from_json(data)
        except (ValueError, KeyError, TypeError):
            return None

    def resource(self) -> str:
        """The device class of the profile that made it (npu, gpu, cpu, ...; "any" unknown)."""
        from rmbuild.declare.profiles import find_profile
        from rmbuild.errors import RmbuildError

        name = self.metadata.get("profile")
        spec = self.metadata.get("spec_file")
        start = Path(spec).parent if isinstance(spec, str) else None
        try:
            return find_profile(str(name), start).profile.resource if name else "any"
        except RmbuildError:
            return "any"

    def compiled_bound(self) -> limits.Bound | None:
        """The longest context the artifact's files fix, read without loading a runtime: the
        same facts the backends' ``compiled_limit()`` read (RBLN's ``max_seq_len``, RNGD's and
        TensorRT's build flags, a static ``attention_mask`` in ``kv_layout.json``)."""
        bounds: list[limits.Bound] = []
        rbln = self.read_json("rbln_config.json")
        if rbln is not None and isinstance(rbln.get("max_seq_len"), int):
            bounds.append(
                limits.Bound(
                    int(rbln["max_seq_len"]),
                    "max_seq_len in rbln_config.json",
                    "rebuild with a larger max_seq_len flag",
                )
            )
        flags = self.flags
        if self.backend == "furiosa" and isinstance(flags.get("max_model_len"), int):
            bounds.append(
                limits.Bound(
                    int(flags["max_model_len"]),
                    "max_model_len flag of the RNGD build",
                    "rebuild with a larger max_model_len flag and buckets",
                )
            )
        if self.backend == "tensorrt" and isinstance(flags.get("max_seq"), int):
            # The shape profile's max unless all three shapes were given by hand (then the
            # plan, not the flag, knows; the layout's answer below still applies).
            if not flags.get("max_shapes"):
                bounds.append(
                    limits.Bound(
                        int(flags["max_seq"]),
                        "max_seq flag of the TensorRT build (its shape profile)",
                        "rebuild with a larger max_seq flag",
                    )
                )
        layout = self.layout()
        mask = layout.spec("attention_mask") if layout is not None else None
        if mask is not None and len(mask.shape) == 2 and mask.shape[1] is not None:
            bounds.append(
                limits.Bound(
                    int(mask.shape[1]),
                    f"attention_mask is {mask.describe()} in {kvlayout.SIDECAR}",
                    "convert the graph with a longer (or dynamic) sequence dim",
                )
            )
        return min(bounds, key=lambda b: b.value) if bounds else None

    def context_limit(self, requested: int | None = None) -> limits.ContextLimit:
        """The limit a server of this artifact must keep to (see :mod:`rmbuild.runtime.limits`);
        ``requested`` lowers it (IncompatibleArtifact, exit 6, where it cannot be had)."""
        return limits.resolve(self.config, self.compiled_bound(), requested)

    def describe(self) -> dict[str, Any]:
        """The artifact as ``versions.json`` names it."""
        md = self.metadata
        return {
            "id": self.key,
            "model": self.model,
            "target": self.target,
            "profile": md.get("profile"),
            "backend": self.backend,
            "manifest": self.record.manifest_digest,
            "built_at": self.record.created_at.astimezone(UTC).isoformat(),
            "rmbuild": md.get("rmbuild_version"),
        }

    def built_with(self) -> dict[str, Any]:
        """The toolchain, tool and fingerprint the artifact was built with."""
        md = self.metadata
        tool = md.get("tool") or {}
        return {
            "toolchain": md.get("toolchain") or {},
            "tool": {k: tool[k] for k in ("name", "package", "version") if k in tool},
            "fingerprint": self.fingerprint,
        }


def artifact_json(art: Artifact) -> str:
    """The artifact's record as a small JSON file for a bundle's own code to read."""
    md = art.metadata
    keep = ("backend", "profile", "target", "model", "flags", "runtime_flags", "fingerprint")
    return json.dumps(
        {"id": art.key, **{k: md.get(k) for k in keep}}, indent=1, sort_keys=True, default=str
    )


def refuse_len(art: Artifact, requested: int | None, what: str) -> None:
    """Refuse (exit 6) an explicit ``--max-model-len`` an engine would override anyway."""
    bound = art.compiled_bound()
    if requested is not None and bound is not None and requested != bound.value:
        raise IncompatibleArtifact(
            f"--max-model-len {requested}: {what} takes the compiled length {bound.value} "
            f"({bound.source}) and no other",
            hint=f"drop --max-model-len, or rebuild the artifact for {requested} tokens",
        )


def only_one(artifacts: list[Artifact], engine: str) -> Artifact:
    """The one artifact an engine's bundle holds (UsageError, exit 2, for several)."""
    from rmbuild.errors import UsageError

    if len(artifacts) != 1:
        raise UsageError(
            f"--to {engine} takes one artifact, not {len(artifacts)}",
            context=[a.label for a in artifacts],
            hint="export each to a folder of its own (only --to triton merges TensorRT plans "
            "of one model built for several GPUs)",
        )
    return artifacts[0]


def refuse(art: Artifact, engine: str, why: str, instead: str) -> None:
    """Refuse (EngineRefused, exit 2) an artifact ``engine`` cannot load."""
    from rmbuild.errors import EngineRefused

    raise EngineRefused(f"--to {engine}: artifact {art.label}: {why}", hint=instead)


def engines_for(backend: str) -> list[str]:
    """The engines whose bundles take an artifact of ``backend`` (for refusals' hints)."""
    table = {
        "onnxruntime": ["triton", "ray-serve", "vllm"],
        "openvino": ["triton", "ray-serve", "vllm"],
        "tensorrt": ["triton", "ray-serve", "vllm"],
        "iree": ["ray-serve", "vllm"],
        "rbln": ["vllm-rbln", "ray-serve", "vllm"],
        "furiosa": ["furiosa-llm", "vllm"],
    }
    return table.get(backend, ["ray-serve", "vllm"])


# numpy dtype names (kv_layout.json) -> the names vLLM's --dtype takes.
VLLM_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def precision(art: Artifact) -> str | None:
    """The dtype the artifact computes in: its KV cache's (the graph's own), else what
    config.json says (``torch_dtype``, or ``dtype`` in newer transformers)."""
    layout = art.layout()
    if layout is not None and layout.past:
        name = layout.past[0].dtype
        if name in VLLM_DTYPES:
            return VLLM_DTYPES[name]
    rbln = art.read_json("rbln_config.json") or {}
    if isinstance(rbln.get("dtype"), str) and rbln["dtype"] in VLLM_DTYPES:
        return rbln["dtype"]
    config = art.config
    value = config.get("torch_dtype") or config.get("dtype")
    return VLLM_DTYPES.get(str(value)) if value else None
