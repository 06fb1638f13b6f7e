"""A vendor compiler's cache kept as a keyed artifact of its own.

FuriosaAI's ``fxb build`` caches compiled kernels (``--compiler-cache-dir``): an unchanged
kernel recompiles in seconds instead of minutes (4-5 min -> 1.7 s for the example). rmbuild
keeps that cache in the store, keyed by the compiler's identity only (the stage's toolchain
identity: lock digest, versions, revisions), so a second model or a small change recompiles
only the kernels that are new:

* before the tool runs, the latest cache for the compiler is copied (writable) into the
  build's ``<workdir>/compiler-cache``, the folder the profile's template passes when its
  cache flag (``compiler_cache`` names it) is null;
* after a successful build, that folder is stored again under the same key (replacing the
  previous version), so the next build starts from everything compiled so far.

It is an accelerator, never an input: it is not in any action key, a build that finds none
runs cold, and a failure to feed or update it never fails the build. A user who sets the cache
flag to a folder of their own manages that folder themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.keys import canonical_json

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.backends.base import BackendPlugin
    from rmbuild.planning.stages import PlannedStage

DIRNAME = "compiler-cache"
KIND = "compiler-cache"


def enabled(stage: PlannedStage) -> bool:
    flag = stage.profile.compiler_cache
    return flag is not None and not stage.flags.get(flag)


def _plugin(stage: PlannedStage) -> BackendPlugin:
    return stage.plugin


def cache_facts(stage: PlannedStage) -> dict[str, Any]:
    """What a backend adds to its cache's key beyond the compiler
    (:meth:`~rmbuild.backends.base.BackendPlugin.compiler_cache_facts`: TensorRT's timing
    cache holds timings of one GPU, so it is keyed by TensorRT version + compute capability)."""
    facts = _plugin(stage).compiler_cache_facts(stage.profile, dict(stage.flags), stage.toolchain)
    return dict(facts or {})


def cache_key(stage: PlannedStage, facts: dict[str, Any] | None = None) -> str:
    """The cache's key: the compiler's identity (plus the backend's cache facts, asked of it
    unless given), nothing of the model or the flags."""
    identity: dict[str, Any] = {
        "kind": KIND,
        "backend": stage.profile.backend,
        "toolchain": stage.toolchain.identity(),
    }
    if facts is None:
        facts = cache_facts(stage)
    if facts:
        identity["facts"] = facts
    return hashlib.sha256(canonical_json(identity)).hexdigest()


def version_key(key: str, manifest_digest: str) -> str:
    """The key one superseded version of a cache keeps."""
    return hashlib.sha256(canonical_json({"cache": key, "manifest": manifest_digest})).hexdigest()


def feed(store: Store, stage: PlannedStage, workdir: Path) -> dict[str, Any]:
    """Copy the latest cache into ``workdir/compiler-cache``; returns what was done."""
    if not enabled(stage):
        return {}
    target = workdir / DIRNAME
    target.mkdir(exist_ok=True)
    key = cache_key(stage)
    record = store.get(key)
    if record is None:
        return {"key": key, "fed": 0}
    source = store.materialize(key)
    shutil.copytree(source, target, dirs_exist_ok=True)
    count = 0
    for root, _dirs, files in os.walk(target):
        for name in files:
            path = Path(root) / name
            path.chmod(path.stat().st_mode | stat.S_IWUSR)  # the compiler may rewrite entries
            count += 1
    return {"key": key, "fed": count}


def update(store: Store, stage: PlannedStage, workdir: Path, model: str) -> dict[str, Any]:
    """Store ``workdir/compiler-cache`` as the compiler's cache (replacing the last one)."""
    folder = workdir / DIRNAME
    if not enabled(stage) or not folder.is_dir() or not any(folder.iterdir()):
        return {}
    facts = cache_facts(stage)  # asked once: a backend may query the device for them
    key = cache_key(stage, facts)
    with store.writing():
        manifest = store.put_tree(folder)
        previous = store.get(key)
        kept = None
        if (
            previous is not None
            and previous.manifest_digest != manifest.digest
            and _plugin(stage).compiler_cache_keeps_versions
        ):
            # A build that added entries makes a new cache; the one it was fed stays valid as
            # an artifact of its own (TensorRT timing caches), the key points at the
            # newest. Same blobs, a second row: nothing is copied.
            kept = version_key(key, previous.manifest_digest)
            store.commit(
                kept,
                store.get_manifest(previous.manifest_digest),
                model=previous.model,
                target=KIND,
                backend=stage.profile.backend,
                metadata={**previous.metadata, "superseded_by": manifest.digest, "blobs": []},
            )
        store.commit(
            key,
            manifest,
            model=f"{stage.toolchain.name}-{KIND}",
            target=KIND,
            backend=stage.profile.backend,
            metadata={
                "kind": KIND,
                "profile": stage.profile.name,
                "stage": KIND,
                "backend": stage.profile.backend,
                "toolchain": stage.toolchain.identity(),
                "facts": facts,
                "updated_by": model,
                "blobs": [],
            },
            replace=True,
        )
    done: dict[str, Any] = {"key": key, "stored": len(manifest.files)}
    if kept:
        done["previous"] = kept
    return done


def safely(fn: Any, *args: Any) -> dict[str, Any]:
    """Run feed/update; an accelerator's failure is a note, never a failed build."""
    with contextlib.suppress(Exception):
        return fn(*args)
    return {"error": True}
