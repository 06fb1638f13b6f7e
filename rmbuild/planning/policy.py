"""Resource classes as targets: which targets ``--target npu`` means, in what order, and which
of them can be built here. The one place that decides; ``compile --explain`` prints
its table.

``--target`` takes a target name or a resource class (``npu``, ``gpu``, ``cpu``; ``pim``,
``remote`` later). A name the model defines wins (``--target cpu`` on a model with a target
called ``cpu`` builds that target, as before). A class resolves to the model's targets whose
profile serves that class; where the model defines none, to built-in default targets: one per
backend that can serve the class, with the profile's default flags. Candidates are ordered by
device presence here (what ``run`` could use), then backend priority, then name; every one
whose toolchains (and their system tools) are present is built, the others are skipped with
what they lack and the command that gets it. None buildable: exit 7.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rmbuild.declare.spec import LoadedSpec, Target
from rmbuild.errors import BackendUnavailable, SpecError, UnknownTarget

CLASSES = ("npu", "gpu", "cpu", "pim", "remote")
# Vendor-native compilers first: they know their device best; portable runtimes after.
BACKEND_PRIORITY = ("furiosa", "rbln", "tensorrt", "openvino", "iree", "onnxruntime")
# Which vendor's devices a backend's artifacts of a class run on (device presence column).
DEVICE_VENDORS = {
    ("furiosa", "npu"): ("furiosa",),
    ("rbln", "npu"): ("rebellions",),
    ("openvino", "npu"): ("intel",),
    ("openvino", "gpu"): ("intel",),
    ("iree", "gpu"): ("nvidia",),
    ("tensorrt", "gpu"): ("nvidia",),
}


@dataclass
class Candidate:
    """One target a class resolved to, and the policy's verdict on it."""

    target: str
    profile: str
    backend: str
    resource: str
    origin: str  # model.yaml | default
    toolchains: list[str] = field(default_factory=list)
    toolchain_present: bool = True
    device_present: bool = False
    missing: list[dict[str, str]] = field(default_factory=list)  # what, install
    chosen: bool = False
    why: str = ""


@dataclass
class Resolution:
    """What ``--target`` values mean: the spec to build from (with any default targets added),
    the target names to build, and the decision table."""

    spec: LoadedSpec
    names: list[str]
    candidates: list[Candidate]
    classes: list[str]

    def table(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.candidates]


def _priority(backend: str) -> int:
    return BACKEND_PRIORITY.index(backend) if backend in BACKEND_PRIORITY else len(BACKEND_PRIORITY)


def toolchain_gaps(toolchain: Any, *, system_tools: bool = True) -> list[dict[str, str]]:
    """Everything ``toolchain`` lacks here, each as ``{"what", "install"}`` (never raises).

    The one answer to "can this toolchain be used here", for ``compile`` (before any tool
    runs), ``--plan``/``--explain``, ``toolchain ls`` and ``info``: its environment (or, for
    one rmbuild does not provision, the packages it declares) and every system tool its tools
    need, all at once, so a user fixes them in one go rather than one per attempt. In the
    order they are to be fixed: system tools first, because ``toolchain install`` checks them
    before it downloads anything. ``system_tools=False`` leaves out the system-tool checks,
    which start a process each (a cache hit starts none).
    """
    from rmbuild.toolrun import provision

    gaps: list[dict[str, str]] = []
    if system_tools:
        try:
            gaps += system_tool_gaps(provision.missing_system_tools(toolchain))
        except Exception as exc:  # noqa: BLE001 - a broken check is a gap, not a crash
            gaps.append({"what": f"toolchain {toolchain.name}: {exc}", "install": ""})
    st = provision.status(toolchain)
    if not st.installed:
        gaps.append(
            {
                "what": f"toolchain {toolchain.name}: {st.reason}",
                "install": toolchain.install_hint(),
            }
        )
    elif not toolchain.provisioned:
        try:
            packages = toolchain.identity()["packages"]
        except Exception as exc:  # noqa: BLE001 - a broken registered env is a gap, not a crash
            return [*gaps, {"what": f"toolchain {toolchain.name}: {exc}", "install": ""}]
        absent = [name for name, version in packages.items() if version is None]
        if absent:
            gaps.append(
                {
                    "what": f"toolchain {toolchain.name}: {', '.join(absent)} not installed",
                    "install": toolchain.install_hint(),
                }
            )
    return gaps


def system_tool_gaps(tools: list[Any]) -> list[dict[str, str]]:
    """Missing system tools (:func:`rmbuild.toolrun.provision.missing_system_tools`) as gaps."""
    return [
        {"what": f"system tool {tool.name} not found", "install": tool.install_hint()}
        for tool in tools
    ]


def chain_gaps(toolchains: list[Any], *, system_tools: bool = True) -> list[dict[str, str]]:
    """:func:`toolchain_gaps` of several toolchains (a target's chain), each gap once."""
    seen: dict[str, Any] = {}
    for tc in toolchains:
        seen.setdefault(tc.name, tc)
    gaps: list[dict[str, str]] = []
    for tc in seen.values():
        gaps += [g for g in toolchain_gaps(tc, system_tools=system_tools) if g not in gaps]
    return gaps


def gap_lines(gaps: list[dict[str, str]]) -> list[str]:
    """One line per gap: what is missing, and the command that gets it."""
    return [g["what"] + (f" -> {g['install']}" if g["install"] else "") for g in gaps]


def gap_hint(gaps: list[dict[str, str]]) -> str | None:
    """The commands that get every gap, in order, each once (None: no command known)."""
    return "; ".join(dict.fromkeys(g["install"] for g in gaps if g["install"])) or None


def unavailable(what: str, gaps: list[dict[str, str]]) -> BackendUnavailable:
    """Exit 7 for ``what`` (e.g. ``tiny-llama:rngd``), naming every missing prerequisite and
    the commands that get them; nothing ran, so no failure is recorded."""
    return BackendUnavailable(
        f"{what} cannot be built here: {len(gaps)} prerequisite(s) missing",
        context=gap_lines(gaps),
        hint=gap_hint(gaps),
    )


def devices_present(backend: str, resource: str, devices: list[dict[str, Any]]) -> bool:
    """Whether ``devices`` (:func:`rmbuild.host.resources.discover`'s) hold a device ``backend``
    runs ``resource`` on; the class policy and the plan ask the same question."""
    # A remote server is no device of this machine: whether it answers is asked when its
    # target builds (its /v1/models) and when it loads, never while planning.
    if resource in ("cpu", "remote"):
        return True
    vendors = DEVICE_VENDORS.get((backend, resource))
    return any(
        d["class"] == resource and (vendors is None or d.get("vendor") in vendors) for d in devices
    )


def _default_targets(spec: LoadedSpec, resource: str) -> dict[str, Target]:
    """Built-in defaults for a class: one compile profile per backend that serves it."""
    from rmbuild.declare.profiles import list_profiles

    by_backend: dict[str, str] = {}
    for loaded in list_profiles(spec.root):
        if isinstance(loaded, SpecError):
            continue
        profile = loaded.profile
        if profile.resource == resource and profile.stage == "compile":
            by_backend.setdefault(profile.backend, profile.name)
    targets = {}
    for _backend, profile in sorted(by_backend.items()):
        name = profile if profile not in spec.spec.targets else f"{profile}-default"
        targets[name] = Target(profile=profile, description=f"built-in default for {resource}")
    return targets


def resolve(
    spec: LoadedSpec,
    requested: list[str],
    *,
    strict: bool = True,
    devices: list | None = None,
    on_planned: Callable[[LoadedSpec, list[list[Any]]], None] | None = None,
) -> Resolution:
    """Resolve ``--target`` values (names or classes) into targets to build; see the module
    docstring. Raises UnknownTarget for a name that is neither (with a did-you-mean), and
    BackendUnavailable (exit 7) when a class has no candidate that can be built here.

    ``on_planned(spec, chains)`` is called once the candidates' chains are planned and before
    anything is checked (the plan cache stats what the decision depends on there)."""
    from rmbuild.planning.stages import plan
    from rmbuild.yamlio import did_you_mean

    targets = dict(spec.spec.targets)
    names: list[str] = []
    classes: list[str] = []
    for value in requested:
        if value in targets or value not in CLASSES:
            if value not in targets:
                raise UnknownTarget(
                    f"no target named {value!r}{did_you_mean(value, [*targets, *CLASSES])}",
                    file=spec.path,
                    field="targets",
                    context=[
                        f"targets: {', '.join(targets)}",
                        f"resource classes: {', '.join(CLASSES)}",
                    ],
                )
            names.append(value)
        else:
            classes.append(value)
    if not classes:
        return Resolution(spec, names, [], [])

    if devices is None:
        from rmbuild.host.resources import discover

        # Device nodes and CLIs only: no process in a vendor toolchain (a hit stays a hit).
        devices = discover(smi=False)["devices"]
    from rmbuild.declare.profiles import find_profile

    candidates: list[Candidate] = []
    extra: dict[str, Target] = {}
    for resource in classes:
        mine = {
            name: t
            for name, t in targets.items()
            if find_profile(t.profile, spec.root).profile.resource == resource
        }
        origin = "model.yaml"
        if not mine:
            mine, origin = _default_targets(spec, resource), "default"
            extra.update(mine)
        for name, target in mine.items():
            profile = find_profile(target.profile, spec.root).profile
            candidates.append(
                Candidate(
                    target=name,
                    profile=profile.name,
                    backend=profile.backend,
                    resource=resource,
                    origin=origin,
                )
            )
    if extra:
        model = spec.spec.model_copy(update={"targets": {**targets, **extra}})
        spec = LoadedSpec(spec=model, path=spec.path, lines=spec.lines)
    chains = [plan(spec, cand.target) for cand in candidates]
    if on_planned is not None:
        on_planned(spec, chains)
    for cand, chain in zip(candidates, chains, strict=True):
        seen: dict[str, Any] = {}
        for stage in chain:
            seen.setdefault(stage.toolchain.name, stage.toolchain)
        cand.toolchains = list(seen)
        cand.missing = chain_gaps(list(seen.values()))
        cand.toolchain_present = not cand.missing
        cand.device_present = devices_present(cand.backend, cand.resource, devices)
    candidates.sort(
        key=lambda c: (c.resource, not c.device_present, _priority(c.backend), c.target)
    )
    for cand in candidates:
        cand.chosen = cand.toolchain_present
        if cand.chosen:
            cand.why = "builds here" + (
                "" if cand.device_present else " (no device here to run it)"
            )
        else:
            cand.why = "; ".join(m["what"] for m in cand.missing)
    chosen = [c.target for c in candidates if c.chosen]
    if not chosen and strict:
        raise BackendUnavailable(
            f"no {'/'.join(classes)} target can be built here",
            context=[
                f"{c.target} ({c.profile}): {line}"
                for c in candidates
                for line in gap_lines(c.missing)
            ]
            or ["no profile serves this class"],
            hint=gap_hint([m for c in candidates for m in c.missing]),
        )
    for name in chosen:
        if name not in names:
            names.append(name)
    return Resolution(spec, names, candidates, classes)


# ----------------------------------------------------------------------------- running

# Which stored artifact serves a logical model (``rmbuild serve NAME``, ``rmbuild.load(NAME)``):
# the same classes, in this order unless model.yaml's ``serve.order`` says otherwise. "any" (a
# portable artifact, e.g. a plain ONNX export) runs on the CPU, so it ranks right after "cpu".
SERVE_ORDER = ("npu", "gpu", "cpu", "remote")


def serve_order(declared: list[str] | tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Device classes in the order they serve: ``declared`` (model.yaml's ``serve.order``)
    or the default, with "any" right after "cpu" where it is not named itself."""
    order = list(declared or SERVE_ORDER)
    if "any" not in order and "cpu" in order:
        order.insert(order.index("cpu") + 1, "any")
    return tuple(order)


def device_here(backend: str, resource: str, devices: list[dict[str, Any]]) -> bool:
    """Whether an artifact of ``backend`` for ``resource`` has a device to run on here.

    The CPU is always here, and so is a portable artifact ("any"); a remote server is no
    device of this machine: its reachability is asked when it loads (its ``/v1/models``)."""
    if resource == "any":
        return True
    return devices_present(backend, resource, devices)


def rank_runnable(
    candidates: list[Any],
    *,
    order: tuple[str, ...],
    devices: list[dict[str, Any]] | None = None,
) -> tuple[list[Any], list[tuple[Any, str]]]:
    """Which of ``candidates`` (objects with ``resource``, ``backend`` and ``created``, a
    timestamp) can run here, best first, and the others with why not.

    Best first: the class's place in ``order``, then backend priority (vendor-native first,
    as for building), then the newest. A class not in ``order`` is not served; an artifact
    whose device this machine lacks is left out (loading it could only fail).
    """
    if devices is None:
        from rmbuild.host.resources import discover

        devices = discover(smi=False)["devices"]
    rank = {cls: i for i, cls in enumerate(order)}
    keep: list[Any] = []
    left: list[tuple[Any, str]] = []
    for cand in candidates:
        if cand.resource not in rank:
            left.append((cand, f"class {cand.resource} is not in the serving order"))
        elif not device_here(cand.backend, cand.resource, devices):
            left.append((cand, f"no {cand.resource} device for {cand.backend} here"))
        else:
            keep.append(cand)
    keep.sort(key=lambda c: (rank[c.resource], _priority(c.backend), -c.created))
    return keep, left
