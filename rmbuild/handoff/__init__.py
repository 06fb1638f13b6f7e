"""Handoff bundles: an artifact in the layout a serving engine loads, with the command that
starts it and the versions it must run (``rmbuild export REF --to ENGINE DIR``).

One module per engine, each with the skeleton :mod:`rmbuild.handoff.bundle` describes:

* ``triton``: a Triton model repository (ONNX Runtime, OpenVINO, TensorRT graphs, and a Python
  backend model that generates through rmbuild's session);
* ``vllm``: the source Hugging Face folder, pinned by digest, and ``vllm serve``;
* ``vllm-rbln``: the optimum-rbln compiled folder and the ``vllm serve`` flags vllm-rbln agrees
  with;
* ``furiosa-llm``: the Hugging Face files and the ``.fxb`` named as ``furiosa-llm serve``
  discovers it;
* ``ray-serve``: rmbuild's own OpenAI-compatible app as a Ray Serve deployment.

``torchserve`` is refused: the project is archived upstream.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from rmbuild.errors import ArtifactNotFound, EngineRefused, StoreCorrupt, UsageError
from rmbuild.handoff.artifact import Artifact
from rmbuild.handoff.bundle import ExportOptions, Plan

if TYPE_CHECKING:
    from artifact_store import Store

# engine name -> module (imported on use: each reads only what its engine needs).
ENGINES: dict[str, str] = {
    "triton": "rmbuild.handoff.triton",
    "vllm": "rmbuild.handoff.vllm",
    "vllm-rbln": "rmbuild.handoff.vllm_rbln",
    "furiosa-llm": "rmbuild.handoff.furiosa_llm",
    "ray-serve": "rmbuild.handoff.ray_serve",
}
# Engines asked for that rmbuild writes no bundle for, with why and what to use instead.
REFUSED: dict[str, tuple[str, str]] = {
    "torchserve": (
        "TorchServe is archived upstream (pytorch/serve is read-only: no further releases or "
        "fixes), so rmbuild writes no bundle for it",
        "serve the artifact with `--to ray-serve` (rmbuild's OpenAI-compatible app on Ray "
        "Serve) or `--to triton` (a Triton model repository), or `--to vllm` for the source "
        "model",
    ),
}
__all__ = ["ENGINES", "REFUSED", "Bundle", "ExportOptions", "engine_module", "export"]


@dataclass
class Bundle:
    """A written bundle: its folder, the plan it came from and what export checked."""

    root: Path
    plan: Plan
    checked: list[str]

    @property
    def engine(self) -> str:
        return self.plan.engine


def engine_module(engine: str) -> ModuleType:
    """The module of ``engine``; EngineRefused (exit 2) for a refused or unknown one."""
    if engine in REFUSED:
        why, instead = REFUSED[engine]
        raise EngineRefused(f"--to {engine}: {why}", hint=instead)
    if engine not in ENGINES:
        import difflib

        close = difflib.get_close_matches(engine, ENGINES, n=1)
        raise EngineRefused(
            f"--to {engine}: not an engine rmbuild exports to"
            + (f" (did you mean {close[0]!r}?)" if close else ""),
            hint="engines: " + ", ".join(ENGINES),
        )
    return importlib.import_module(ENGINES[engine])


def export(
    refs: list[str],
    engine: str,
    dest: str | Path,
    *,
    store: Store,
    options: ExportOptions | None = None,
) -> Bundle:
    """Write the bundle of ``refs`` (ids, prefixes, aliases or ``MODEL:TARGET``) for
    ``engine`` into ``dest`` (new or empty); returns it. Each artifact is checked against its
    manifest first; ``dest`` is whole or absent afterwards."""
    from rmbuild.handoff import bundle as bundle_mod
    from rmbuild.storage.store import resolve

    module = engine_module(engine)
    options = options or ExportOptions()
    if not refs:
        raise UsageError("export needs an artifact: an id, an alias or MODEL:TARGET")
    bundle_mod.check_destination(Path(dest).absolute())
    records = [resolve(store, ref) for ref in refs]
    pins = []
    try:
        artifacts = []
        for record in records:
            problems = store.check(record, repair=False)
            if problems and problems[0].absent:
                raise ArtifactNotFound(
                    f"artifact {record.key[:12]} is in the index, but its files are not in this "
                    "store (another store sharing the index built it)",
                    hint=f"`rmbuild pull {record.key[:12]} --remote URL` fetches it",
                )
            if problems:
                raise StoreCorrupt(
                    f"artifact {record.key[:12]} is corrupt; nothing was exported",
                    context=[str(p) for p in problems],
                    hint="`rmbuild verify --repair` quarantines the damaged blobs, then "
                    "`rmbuild compile` rebuilds (or `rmbuild pull` fetches it again)",
                )
            pins.append(store.pin(record.key).acquire())
            tree = store.materialize(record.key)
            manifest = store.get_manifest(record.manifest_digest)
            files = {rel: entry.digest for rel, entry in manifest.files.items()}
            artifacts.append(Artifact(record, tree, files, store))
        plan = module.plan(artifacts, options)
        checked = bundle_mod.write(plan, Path(dest), module.check)
    finally:
        for pin in pins:
            pin.release()
    return Bundle(Path(dest).absolute(), plan, checked)
