"""SLSA provenance v1 for every stage rmbuild builds.

Each build writes one in-toto Statement (``predicateType`` ``https://slsa.dev/provenance/v1``)
as a blob of the store, named by the artifact's metadata (``provenance``, and listed in
``blobs`` so that push and pull carry it). Its subjects are the artifact's files with their
SHA-256; its ``buildType`` is :data:`BUILD_TYPE`, whose parameters ``docs/provenance.md``
documents:

* ``externalParameters``: the model.yaml (path and digest), the model, target, profile, stage,
  the flags (keyed and runtime) and the declared source (a folder, or a hub repo and revision);
* ``internalParameters``: the action key, the rendered argv, derived flags, the tool's and the
  host's facts;
* ``resolvedDependencies``: each source file with its digest (the first stage), the hub repo
  at its commit, the toolchain (its lock digest, or the digest of its identity where it has no
  lock) and each of its packages as a purl, the tool, and the upstream stages' artifacts
  (their manifest digests);
* ``byproducts``: the build log's digest; ``runDetails.metadata``: startedOn/finishedOn.

The statement is a record, not a claim: anyone who can write the store can write one. It
becomes a claim when ``rmbuild sign`` signs it (a second DSSE bundle beside the model
signature, see :mod:`rmbuild.trust.signatures`).
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.version import __version__

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Manifest, Store
    from rmbuild.declare.spec import LoadedSpec
    from rmbuild.keys import ActionKey
    from rmbuild.planning.stages import PlannedStage

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://rmbuild.dev/buildtypes/stage/v1"
BUILDER_ID = "https://rmbuild.dev/builder/v1"
# The metadata field that names the statement's blob.
META_FIELD = "provenance"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha256_json(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def _spec_file(spec: LoadedSpec) -> dict[str, Any]:
    # A spec laid out from a Ray bundle names the driver's path; its bytes are the bundle's.
    for candidate in (spec.root / spec.path.name, spec.path):
        try:
            data = Path(candidate).read_bytes()
        except OSError:
            continue
        return {"path": str(spec.path), "digest": {"sha256": hashlib.sha256(data).hexdigest()}}
    return {"path": str(spec.path)}


def _declared_source(spec: LoadedSpec) -> dict[str, Any]:
    src = spec.spec.source
    declared: dict[str, Any] = {"format": src.format}
    if getattr(src, "hub", None):
        declared.update({"hub": src.hub, "revision": src.revision})
    else:
        declared["path"] = src.path
    return declared


def _toolchain_deps(toolchain: dict[str, Any]) -> list[dict[str, Any]]:
    name = str(toolchain.get("name", "?"))
    lock = toolchain.get("lock")
    digest = str(lock) if isinstance(lock, str) and lock else _sha256_json(toolchain)
    annotations = {"python": toolchain.get("python"), "digestOf": "lock" if lock else "identity"}
    if toolchain.get("probe"):
        annotations["probe"] = toolchain["probe"]
    deps = [
        {
            "name": f"toolchain:{name}",
            "uri": f"rmbuild:toolchain/{name}",
            "digest": {"sha256": digest},
            "annotations": annotations,
        }
    ]
    for package, version in sorted((toolchain.get("packages") or {}).items()):
        dep: dict[str, Any] = {"name": f"package:{package}"}
        if version:
            dep["uri"] = f"pkg:pypi/{package.lower()}@{version}"
        else:
            dep["annotations"] = {"installed": False}
        deps.append(dep)
    return deps


def _tool_dep(tool: dict[str, Any]) -> dict[str, Any]:
    dep: dict[str, Any] = {"name": f"tool:{tool.get('name', '?')}", "annotations": tool}
    digest = tool.get("sha256") or tool.get("script_sha256")
    if isinstance(digest, str):
        dep["digest"] = {"sha256": digest}
    return dep


def source_deps(spec: LoadedSpec, store: Store) -> list[dict[str, Any]]:
    """The model folder's files as resolved dependencies. Read before the tool runs: the
    digests are then stat-cache hits of the key's own hashing, and nothing here needs the
    index once the tool's output waits to be recorded."""
    from rmbuild.declare import sources

    deps: list[dict[str, Any]] = []
    hub = None
    if getattr(spec.spec.source, "hub", None):
        # Resolved (refused, or fetched) when the build computed the source digest, or by the
        # driver where the spec came in a Ray bundle: only read here.
        hub = sources.hub_snapshot(spec, download=False, check_pinned=False)
    if hub is not None:
        deps.append(hub.dependency())
    for rel, digest in sorted(sources.source_file_digests(spec, store).items()):
        dep: dict[str, Any] = {"name": f"source/{rel}", "digest": {"sha256": digest}}
        if hub is not None:
            dep["uri"] = hub.file_uri(rel)
        deps.append(dep)
    return deps


def statement(
    store: Store,
    *,
    spec: LoadedSpec,
    target: str,
    stage: PlannedStage,
    key: ActionKey,
    key_hex: str,
    manifest: Manifest,
    parents: list[str],
    argv: list[str],
    derived: dict[str, Any],
    log_digest: str,
    started_at: datetime,
    finished_at: datetime | None = None,
    sources: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The SLSA provenance statement of one stage's build (see the module docstring);
    ``sources`` is :func:`source_deps`, where the caller read it already."""
    profile = stage.profile
    deps: list[dict[str, Any]] = []
    if parents:
        for parent, digest in zip(parents, key.inputs.values(), strict=False):
            deps.append(
                {
                    "name": f"artifact:{parent}",
                    "uri": f"rmbuild:artifact/{parent}",
                    "digest": {"sha256": digest},
                    "annotations": {"role": "input", "digestOf": "manifest"},
                }
            )
    else:
        deps += sources if sources is not None else source_deps(spec, store)
    deps += _toolchain_deps(dict(key.toolchain))
    deps.append(_tool_dep(dict(key.tool)))
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": rel, "digest": {"sha256": entry.digest}}
            for rel, entry in sorted(manifest.files.items())
        ],
        "predicateType": SLSA_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "modelSpec": _spec_file(spec),
                    "model": spec.spec.name,
                    "target": target,
                    "profile": profile.name,
                    "stage": profile.stage,
                    "backend": profile.backend,
                    "flags": dict(stage.flags),
                    "source": _declared_source(spec),
                },
                "internalParameters": {
                    "actionKey": key_hex,
                    "keyVersion": key.to_dict()["key_version"],
                    "argv": list(argv),
                    "derivedFlags": dict(derived),
                    "runtimeFlags": sorted(stage.runtime_flags()),
                    "fingerprint": dict(key.fingerprint),
                    "host": {"machine": platform.machine(), "system": platform.system()},
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"rmbuild": __version__}},
                "metadata": {
                    "invocationId": f"{key_hex}/{_rfc3339(started_at)}",
                    "startedOn": _rfc3339(started_at),
                    "finishedOn": _rfc3339(finished_at or datetime.now(UTC)),
                },
                "byproducts": [
                    {"name": "log", "digest": {"sha256": log_digest}, "mediaType": "text/plain"}
                ],
            },
        },
    }


def record(store: Store, **facts: Any) -> str:
    """Write the stage's statement (:func:`statement`) as a blob; its digest."""
    from artifact_store.records import canonical_json

    return store.put_bytes(canonical_json(statement(store, **facts)))


def read(store: Store, record: ArtifactRecord) -> dict[str, Any] | None:
    """The provenance statement recorded with ``record``; None for an artifact built before
    rmbuild recorded one (or whose blob this store lacks)."""
    digest = record.metadata.get(META_FIELD)
    if not isinstance(digest, str) or not store.has_blob(digest):
        return None
    return json.loads(store.read_bytes(digest))
