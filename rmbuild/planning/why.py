"""Why a stage misses: the planned key's factors against the nearest stored entry.

Users of every compile cache ask "why did this recompile?" (pytorch #144859, ai-dynamo/dynamo
#10695): the key is a digest, so a miss says nothing. Each artifact's metadata keeps the
``action_key`` it was stored under (ActionKey.to_dict()), so the planned key can be compared
field by field with the stored entry of the same model, target and profile that differs least:
"same graph and flags; onnxruntime 1.32.0 -> 1.33.0".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store
    from rmbuild.planning.plan import StagePlan

# Key fields in the order a person reads them, and the words for "this one is the same".
FIELDS = (
    ("inputs", "inputs"),
    ("flags", "flags"),
    ("argv", "command line"),
    ("configs", "config files"),
    ("tool", "tool"),
    ("toolchain", "toolchain"),
    ("fingerprint", "host facts"),
    ("env", "env"),
    ("carry", "carried files"),
    ("stage", "stage"),
    ("backend", "backend"),
    ("profile", "profile"),
    ("key_version", "key version"),
)
_MISSING = object()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def _is_hex64(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    if isinstance(value, str) and _is_hex64(value):
        return value[:12]  # a digest: its head is enough to tell two apart
    if isinstance(value, str) and value.startswith("sha256:") and _is_hex64(value[7:]):
        return value[:19]  # a key_env value's digest (sha256: and 12 hex digits)
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _line(field: str, path: str, old: Any, new: Any, first_stage: bool) -> str:
    """One difference in a person's words."""
    old_s, new_s = _show(old), _show(new)
    parts = path.split(".")
    if field == "toolchain" and len(parts) == 3 and parts[1] == "packages":
        return f"{parts[2]} {old_s} → {new_s}"
    if field == "toolchain" and parts[1:] == ["python"]:
        return f"Python {old_s} → {new_s}"
    if field == "inputs":
        what = "model files (graph/weights)" if first_stage else "upstream artifact"
        return f"{what} changed ({old_s} → {new_s})"
    if field == "flags" and len(parts) >= 2:
        return f"flag {'.'.join(parts[1:])}: {old_s} → {new_s}"
    if field == "env" and len(parts) >= 2:
        # A key_env value is keyed by its digest; a key stored before that (key version 2)
        # holds the value itself, which may be a token: shown as its digest too.
        from rmbuild.toolrun.toolenv import secret_digest

        digests = [v for v in (old, new) if isinstance(v, str) and v.startswith("sha256:")]
        if digests and isinstance(old, str) and not old.startswith("sha256:"):
            old_s = _show(secret_digest(old)) if old else old_s
        if digests and isinstance(new, str) and not new.startswith("sha256:"):
            new_s = _show(secret_digest(new)) if new else new_s
        return f"env {parts[1]}: {old_s} → {new_s}"
    if field == "fingerprint" and len(parts) >= 2:
        return f"host {'.'.join(parts[1:])}: {old_s} → {new_s}"
    if field == "key_version":
        return f"key version {old_s} → {new_s} (rmbuild changed what a key holds)"
    if field == "argv":
        return "command line differs (the template or a flag's rendering changed)"
    return f"{path}: {old_s} → {new_s}"


def diff(
    planned: dict[str, Any], stored: dict[str, Any], *, first_stage: bool = True
) -> tuple[list[str], list[str]]:
    """(fields that are the same, differences in words) between two ActionKey dicts.

    ``first_stage``: the stage reads the model source (its input is "the graph"), not an
    upstream artifact.
    """
    same: list[str] = []
    lines: list[str] = []
    for name, words in FIELDS:
        a, b = planned.get(name, _MISSING), stored.get(name, _MISSING)
        if a == b:
            if name in ("inputs", "flags", "tool", "toolchain", "fingerprint", "env"):
                same.append(
                    ("graph" if first_stage else "input artifact") if name == "inputs" else words
                )
            continue
        if name == "argv":
            if planned.get("flags") == stored.get("flags"):  # else the flags say it already
                lines.append(_line(name, name, b, a, first_stage))
            continue
        fa: dict[str, Any] = {}
        fb: dict[str, Any] = {}
        _flatten(a if a is not _MISSING else {}, name, fa)
        _flatten(b if b is not _MISSING else {}, name, fb)
        for path in sorted(set(fa) | set(fb)):
            old, new = fb.get(path, _MISSING), fa.get(path, _MISSING)
            if old != new:
                lines.append(_line(name, path, old, new, first_stage))
    return same, lines


def summary(same: list[str], lines: list[str]) -> str:
    """ "same graph and flags; onnxruntime 1.32.0 → 1.33.0"."""
    head = ""
    if same:
        head = "same " + (same[0] if len(same) == 1 else ", ".join(same[:-1]) + " and " + same[-1])
    if not lines:
        return head or "identical key factors"
    return (head + "; " if head else "") + "; ".join(lines)


def nearest(
    records: list[ArtifactRecord], planned: dict[str, Any], *, first_stage: bool = True
) -> tuple[ArtifactRecord, list[str], list[str]] | None:
    """The stored record whose key differs least from ``planned`` (newest on a tie)."""
    best = None
    for record in records:
        stored = (record.metadata or {}).get("action_key")
        if not isinstance(stored, dict):
            continue
        same, lines = diff(planned, stored, first_stage=first_stage)
        if best is None or len(lines) < len(best[2]):
            best = (record, same, lines)
    return best


def stored_for(
    store: Store, model: str, target: str, profile: str, remote: Any = None
) -> list[ArtifactRecord]:
    """Stored artifacts of ``profile`` used by (model, target), newest first, then the
    remote's; else any of ``profile`` for the model (a renamed target keeps its kin)."""
    found = store.list(model=model)
    if remote is not None:
        try:
            found += [e.to_record() for e in remote.list() if e.model == model]
        except Exception:  # noqa: BLE001 - the remote's view is a bonus in a why
            pass
    same = [r for r in found if _profile(r) == profile]
    mine = [r for r in same if (model, target) in {(r.model, r.target), *r.uses}]
    return mine or same


def _profile(record: ArtifactRecord) -> str | None:
    return (record.metadata or {}).get("profile")


def explain_miss(
    store: Store,
    model: str,
    target: str,
    stage: StagePlan,
    remote: Any = None,
    *,
    first_stage: bool = True,
) -> str:
    """The ``reason`` of a planned miss: what changed since the nearest stored entry (local,
    or on ``remote``)."""
    if stage.factors is None:
        return ""
    candidates = stored_for(store, model, target, stage.profile, remote)
    found = nearest(candidates, stage.factors, first_stage=first_stage)
    if found is None:
        return f"nothing stored yet for {model}:{target} with profile {stage.profile}"
    record, same, lines = found
    return f"vs {record.key[:12]} ({record.created_at:%Y-%m-%d %H:%M}): {summary(same, lines)}"


# ----------------------------------------------------------------------------- check

OPTIMAL, REBUILD, UNSUPPORTED = "optimal", "rebuild", "unsupported"


def grade_artifact(record: ArtifactRecord) -> dict[str, Any]:
    """``rmbuild check``: optimal / works but a rebuild would be better / unsupported, for
    this host, from the index row and its metadata alone (no blob is read)."""
    from rmbuild.errors import IncompatibleArtifact, RmbuildError
    from rmbuild.plugins import get_backend

    metadata = dict(record.metadata or {})
    out: dict[str, Any] = {
        "artifact": record.key,
        "model": record.model,
        "target": record.target,
        "backend": record.backend,
        "profile": metadata.get("profile"),
        "verdict": OPTIMAL,
        "reasons": [],
    }

    def verdict(kind: str, reason: str) -> dict[str, Any]:
        out["verdict"] = kind
        out["reasons"].append(reason)
        return out

    if record.state != "ok":
        return verdict(UNSUPPORTED, f"the stored copy is {record.state}: {record.problem or '?'}")
    try:
        plugin = get_backend(record.backend)
    except RmbuildError as exc:
        return verdict(UNSUPPORTED, exc.message)
    available = plugin.availability()
    if not available.ok:
        install = f" ({available.install})" if available.install else ""
        return verdict(UNSUPPORTED, f"backend {record.backend}: {available.reason}{install}")
    try:
        plugin.check_compatible(metadata)
    except IncompatibleArtifact as exc:
        return verdict(UNSUPPORTED, exc.message)
    graded = plugin.grade(metadata)
    if graded is not None:
        return verdict(REBUILD if graded[0] == REBUILD else OPTIMAL, graded[1])
    # Generic rules: the runtime that loads it is newer or older than the one it was built
    # with, or the CPU it was tuned for is not this one.
    built = ((metadata.get("toolchain") or {}).get("packages")) or {}
    for name, here in sorted(available.versions.items()):
        then = built.get(name)
        if then and here and then != here:
            verdict(REBUILD, f"built with {name} {then}; this host has {here}")
    isa = (metadata.get("fingerprint") or {}).get("cpu_isa")
    if isa is not None:
        from rmbuild.host.hostinfo import cpu_info

        here_isa = cpu_info().get("isa")
        if here_isa != isa:
            verdict(REBUILD, f"tuned for CPU ISA {isa}; this host is {here_isa}")
    if not out["reasons"]:
        out["reasons"].append("built for what this host has")
    return out
