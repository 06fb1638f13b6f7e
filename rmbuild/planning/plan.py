"""What a build would do, without running anything: ``compile --plan [--json]``.

For every target, each stage of its chain with its action key, whether the local store (and
the remote, when one is configured) holds it, and why a stage cannot be built or run here
(a missing toolchain or system tool, a key that cannot be computed, a corrupt stored copy).

A stage's key chains the manifest digest of its upstream artifact (Merkle-style), so the key of
a stage whose upstream is not stored yet cannot be known before that upstream is built: the
plan says so (``key: null``) instead of guessing. The JSON layout is pinned by
``rmbuild/schemas/plan.schema.json`` (``PLAN_SCHEMA_VERSION``); tests validate real output
against it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from rmbuild.errors import RmbuildError

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.declare.spec import LoadedSpec

# 2: action "skip" (an upstream stage whose files no build here needs).
PLAN_SCHEMA_VERSION = 2
NOT_CONFIGURED = "not configured"


@dataclass
class StagePlan:
    """One stage of one target in the plan."""

    profile: str
    stage: str
    backend: str
    toolchain: str
    key: str | None
    local: str  # hit | miss | corrupt | unknown
    remote: str  # hit | miss | not configured | unknown
    action: str  # reuse | skip | build | rebuild | pull | blocked
    reason: str = ""
    blocked: list[dict[str, str]] = field(default_factory=list)  # what, install
    # The planned key's factors (ActionKey.to_dict()), for `why`; not in the JSON.
    factors: dict[str, Any] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("factors")
        return data


@dataclass
class TargetPlan:
    """One target: its stages, whether it is all cached, and whether it can run here."""

    target: str
    profile: str
    resource: str
    status: str  # cached | build | pull | blocked
    device_present: bool
    stages: list[StagePlan]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "profile": self.profile,
            "resource": self.resource,
            "status": self.status,
            "device_present": self.device_present,
            "notes": self.notes,
            "stages": [s.to_json() for s in self.stages],
        }


@dataclass
class Plan:
    """The plan of one model.yaml's targets."""

    model: str
    spec: str
    remote: str | None
    targets: list[TargetPlan]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "model": self.model,
            "spec": self.spec,
            "remote": self.remote or NOT_CONFIGURED,
            "targets": [t.to_json() for t in self.targets],
        }

    def missing(self) -> list[str]:
        """One line per stage that is not stored locally, for readonly errors."""
        lines = []
        for t in self.targets:
            for s in t.stages:
                if s.action not in ("reuse", "skip"):
                    key = s.key[:12] if s.key else "key unknown until its input is built"
                    why = f": {s.reason}" if s.reason else ""
                    lines.append(f"{t.target} / {s.profile} ({key}) {s.action}{why}")
        return lines


def schema() -> dict[str, Any]:
    """The JSON Schema of ``compile --plan --json`` (shipped in the wheel)."""
    text = resources.files("rmbuild.schemas").joinpath("plan.schema.json").read_text("utf-8")
    return json.loads(text)


# ----------------------------------------------------------------------------- remote


def _remote_entry(remote: Any, key: str) -> tuple[str, Any]:
    """("hit", entry) | ("miss", None) | ("unknown", None) for ``key`` on ``remote``."""
    try:
        entry = remote.get(key)
    except Exception:  # noqa: BLE001 - an unreachable remote reads as unknown in a plan
        return "unknown", None
    return ("hit", entry) if entry is not None else ("miss", None)


# ----------------------------------------------------------------------------- planning


def _gaps(toolchain: Any) -> list[dict[str, str]]:
    from rmbuild.planning import policy

    try:
        return policy.toolchain_gaps(toolchain)
    except Exception as exc:  # noqa: BLE001 - a broken toolchain is a gap, not a crash
        return [{"what": f"toolchain {toolchain.name}: {exc}", "install": ""}]


def blocked_reason(gaps: list[dict[str, str]]) -> str:
    """The ``reason`` of a stage that cannot be built here: everything it lacks, at once."""
    return "cannot be built here: " + "; ".join(g["what"] for g in gaps)


def plan_target(
    spec: LoadedSpec,
    target: str,
    store: Store,
    *,
    devices: list[dict[str, Any]],
    remote: Any = None,
    explain_misses: bool = True,
) -> TargetPlan:
    """Plan one target: keys as far as they can be known, local/remote state, blockers."""
    from rmbuild.planning import policy, why
    from rmbuild.planning.stages import action_key, source_digest
    from rmbuild.planning.stages import plan as plan_chain
    from rmbuild.storage import results

    chain = plan_chain(spec, target)
    last = chain[-1].profile
    # "any" (a portable export) runs wherever its runtime does, like "cpu".
    device_present = last.resource in ("cpu", "any") or policy.devices_present(
        last.backend, last.resource, devices
    )
    stages: list[StagePlan] = []
    notes: list[str] = []
    try:
        inputs: dict[str, str] | None = {"model": source_digest(spec, store)}
    except RmbuildError as exc:
        inputs = None
        notes.append(f"model source: {exc.message}")
    upstream = ""
    for stage in chain:
        profile = stage.profile
        entry = StagePlan(
            profile=profile.name,
            stage=profile.stage,
            backend=profile.backend,
            toolchain=stage.toolchain.name,
            key=None,
            local="unknown",
            remote=NOT_CONFIGURED if remote is None else "unknown",
            action="build",
        )
        stages.append(entry)
        gaps = _gaps(stage.toolchain)
        if gaps:
            entry.blocked += gaps
        if inputs is None:
            entry.reason = (
                f"its input is the output of {upstream}, which is not stored yet: its key is "
                "known once that is built"
                if upstream
                else "the model source cannot be read"
            )
            if gaps:
                entry.action = "blocked"
            upstream = profile.name
            continue
        try:
            key = action_key(stage, inputs, spec.root, hasher=store.hash_files)
        except RmbuildError as exc:
            if not gaps:  # else the key failed for what the gaps already say: once is enough
                entry.blocked.append({"what": exc.message, "install": exc.hint or ""})
            entry.action = "blocked"
            entry.reason = blocked_reason(entry.blocked)
            inputs, upstream = None, profile.name
            continue
        entry.key = key.compute()
        entry.factors = key.to_dict()
        record = store.get(entry.key)
        problems = store.check(record, repair=False) if record is not None else []
        if record is not None and not problems:
            entry.local, entry.action = "hit", "reuse"
            inputs = {"model": record.manifest_digest}
        else:
            # A shared index names artifacts other stores hold: a miss here, not damage.
            elsewhere = bool(problems) and problems[0].absent
            entry.local = "corrupt" if record is not None and not elsewhere else "miss"
            pulled = None
            if remote is not None:
                entry.remote, pulled = _remote_entry(remote, entry.key)
            if pulled is not None:
                entry.action = "pull"
                entry.reason = "held on the remote"
            elif problems and not elsewhere:
                entry.action = "rebuild"
                entry.reason = f"stored artifact is corrupt ({problems[0]}); rebuild"
            elif elsewhere:
                entry.action = "build"
                entry.reason = "in the shared index, but another store holds its files"
            else:
                entry.action = "build"
                if explain_misses:
                    entry.reason = why.explain_miss(
                        store, spec.spec.name, target, entry, remote, first_stage=not upstream
                    )
            # The downstream key chains this stage's output digest: known from its result
            # (this index's, the remote's entry or result) without its files, else once built.
            output = pulled.manifest_digest if pulled is not None else None
            output = output or results.known_output(store, remote, entry.key, keep=False)
            inputs = {"model": output} if output else None
        if entry.action in ("reuse", "pull"):
            entry.blocked = []  # nothing to build here: what a build would lack is moot
        elif entry.blocked:
            entry.action = "blocked"
            entry.reason = entry.reason or blocked_reason(entry.blocked)
        upstream = profile.name
    _skip_unneeded(stages)
    actions = {s.action for s in stages}
    status = (
        "blocked"
        if "blocked" in actions
        else "build"
        if actions & {"build", "rebuild"}
        else "pull"
        if "pull" in actions
        else "cached"
    )
    if not device_present:
        # "Building it works" only where it does: a blocked target cannot be built either.
        works = "" if status == "blocked" else " (building it works)"
        notes.insert(0, f"no {last.resource} device here to run it{works}")
    return TargetPlan(
        target=target,
        profile=last.name,
        resource=last.resource,
        status=status,
        device_present=device_present,
        stages=stages,
        notes=notes,
    )


def plan_spec(
    spec: LoadedSpec,
    targets: list[str],
    store: Store,
    *,
    remote: Any = None,
    remote_url: str | None = None,
    devices: list[dict[str, Any]] | None = None,
    explain_misses: bool = True,
) -> Plan:
    """The plan of ``targets`` of ``spec``: nothing runs, nothing is written but stat caches.

    ``remote``: an :class:`artifact_store.remote.Remote` (see
    :func:`rmbuild.storage.remotes.open_remote`) or None;
    or ``remote_url`` to open one.
    """
    if remote is None and remote_url:
        from rmbuild.storage import remotes

        remote = remotes.open_remote(remote_url, start=spec.root)
    if devices is None:
        from rmbuild.host.resources import discover

        # Device nodes and CLIs only, as the class policy does: no vendor process starts.
        devices = discover(smi=False)["devices"]
    return Plan(
        model=spec.spec.name,
        spec=str(spec.path),
        remote=getattr(remote, "display", None) or (str(remote) if remote else None),
        targets=[
            plan_target(
                spec,
                name,
                store,
                devices=devices,
                remote=remote,
                explain_misses=explain_misses,
            )
            for name in targets
        ],
    )


def _skip_unneeded(stages: list[StagePlan]) -> None:
    """Mark "skip" the stages whose files no build here needs, as :func:`rmbuild.build.build`
    does: the last stage's files are needed, and the input of every needed stage that is to be
    built. A stage before them is known by its result (its key, and the output digest the next
    key is computed from) without its files, so it is neither pulled nor built."""
    needed = len(stages) - 1
    while needed > 0 and stages[needed].action in ("build", "rebuild", "blocked"):
        needed -= 1
    for entry in stages[:needed]:
        if entry.action in ("build", "rebuild", "pull", "blocked") and entry.key is not None:
            entry.action = "skip"
            entry.reason = "its files are not needed here: a later stage is stored or pulled"
            entry.blocked = []


def why_target(store: Store, spec: Any, target: str, *, remote: Any = None) -> Any:
    """The plan of one target with a reason for every miss (``rmbuild why``)."""
    return plan_spec(spec, [target], store, remote=remote).targets[0]


def why_targets(
    store: Store, spec: Any, value: str, *, remote: Any = None
) -> tuple[list[str], list[Any]]:
    """``rmbuild why -t VALUE``, where VALUE is a target name or a resource class, as
    ``compile --target`` takes it (:func:`rmbuild.planning.policy.resolve`): the classes VALUE named
    (empty for a name) and the plan of each target it means, those that cannot be built here
    too (each says what it lacks)."""
    from rmbuild.planning import policy

    resolution = policy.resolve(spec, [value], strict=False)
    names = list(resolution.names)
    names += [c.target for c in resolution.candidates if c.target not in names]
    plans = plan_spec(resolution.spec, names, store, remote=remote).targets
    return resolution.classes, plans


def render_text(plan: Plan) -> list[str]:
    """Plain lines of the plan for a terminal."""
    lines = [f"plan for {plan.model} ({plan.spec}); remote: {plan.remote or NOT_CONFIGURED}"]
    for t in plan.targets:
        lines.append(f"{t.target} ({t.profile}, {t.resource}): {t.status}")
        for note in t.notes:
            lines.append(f"    note: {note}")
        for s in t.stages:
            key = s.key[:12] if s.key else "?" * 12
            state = f"local {s.local}, remote {s.remote}"
            lines.append(f"  {s.profile:<20} {key}  {s.action:<8} ({state})")
            if s.reason and s.reason != blocked_reason(s.blocked):  # else the lines below
                lines.append(f"      why: {s.reason}")
            for gap in s.blocked:
                install = f" -> {gap['install']}" if gap["install"] else ""
                lines.append(f"      cannot build here: {gap['what']}{install}")
    return lines
