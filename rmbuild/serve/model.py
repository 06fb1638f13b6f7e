"""The logical model: what ``rmbuild serve NAME`` and ``rmbuild.load(NAME)`` mean, and which
stored artifact answers.

The user names a model.yaml, a model name, an alias or an artifact id. A name or a model.yaml
means every target of that model whose artifact is stored here; an alias or an id means that
artifact. :func:`rmbuild.policy.rank_runnable` (the module ``--target npu`` asks too) orders
them: by device class (model.yaml's ``serve.order``, default NPU, GPU, CPU, remote), then
backend, newest first; an artifact whose device this machine lacks, or whose class the order
leaves out, is not a candidate. The first candidate that loads serves; the others are kept, in
order, for fallback. Nothing is compiled unless asked (``--build``): a serving host reads the
store, and with a remote it pulls what the store lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.errors import ArtifactNotFound, BackendUnavailable, RmbuildError, UsageError

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store
    from artifact_store.remote import Remote
    from rmbuild.declare.spec import LoadedSpec
    from rmbuild.runtime.session import BackendSession

# Kept for callers that passed it; the order itself is the policy's (rmbuild.policy).
DEFAULT_ORDER = ("npu", "gpu", "cpu", "any", "remote")


@dataclass
class Candidate:
    """One stored artifact that could serve the model, and why it could not where it failed."""

    record: ArtifactRecord
    resource: str
    failure: str = ""

    @property
    def label(self) -> str:
        return f"{self.record.target} ({self.record.key[:12]}, {self.record.backend})"

    @property
    def backend(self) -> str:
        return self.record.backend

    @property
    def created(self) -> float:
        return self.record.created_at.timestamp()

    @property
    def target(self) -> str:
        return self.record.target

    def matches(self, what: str) -> bool:
        """Whether ``what`` names this candidate: its target, device class, backend, or a
        prefix (6+ characters) of its artifact id; case-insensitive."""
        w = what.strip().lower()
        return w in (self.target.lower(), self.resource, self.backend.lower()) or (
            len(w) >= 6 and self.record.key.startswith(w)
        )


@dataclass
class LogicalModel:
    """A model name and its candidates, best first (``excluded``: those that cannot run
    here, with why)."""

    name: str
    candidates: list[Candidate] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)
    order: tuple[str, ...] = ()
    excluded: list[tuple[Candidate, str]] = field(default_factory=list)

    def answers_to(self, name: str | None) -> bool:
        """Whether a request's ``model`` field names this model (None: any)."""
        if name is None or name == self.name or name in self.aliases:
            return True
        return any(
            name and c.record.key.startswith(name) and len(name) >= 6 for c in self.candidates
        )

    def find(self, what: str) -> int:
        """The index of the best candidate ``what`` names (see :meth:`Candidate.matches`);
        UsageError (exit 2) listing the candidates where none does."""
        for i, candidate in enumerate(self.candidates):
            if candidate.matches(what):
                return i
        raise UsageError(
            f"model {self.name!r} has no candidate {what!r} that can run here",
            context=[f"{c.label}: {c.resource}" for c in self.candidates]
            + [f"{c.label}: not here ({why})" for c, why in self.excluded],
            hint="name a target, a device class (npu, gpu, cpu, remote), a backend or an "
            "artifact id of the list",
        )

    def pin(self, what: str) -> None:
        """Keep only the candidates ``what`` names (``--device``), best first."""
        self.find(what)  # none: UsageError naming the candidates
        self.candidates = [c for c in self.candidates if c.matches(what)]


def _resource(record: ArtifactRecord, start: Path | None) -> str:
    """The device class of the profile that made ``record`` ("any" where it is unknown)."""
    from rmbuild.declare.profiles import find_profile

    name = record.metadata.get("profile")
    if not name:
        return "any"
    spec_file = record.metadata.get("spec_file")
    if start is None and spec_file:
        # Named by model name: the project's own profiles are beside its model.yaml.
        start = Path(str(spec_file)).parent
    try:
        return find_profile(str(name), start).profile.resource
    except RmbuildError:
        return "any"


def _finals(records: list[ArtifactRecord]) -> list[ArtifactRecord]:
    """Per target, the newest artifact no other artifact of that target was built from (the
    last stage; an export feeding a compile is not served)."""
    parents: set[str] = set()
    for r in records:
        parents.update(r.metadata.get("parents") or [])
    best: dict[str, ArtifactRecord] = {}
    for r in records:
        if r.key in parents:
            continue
        current = best.get(r.target)
        if current is None or r.created_at > current.created_at:
            best[r.target] = r
    return list(best.values())


def _internal(record: ArtifactRecord) -> bool:
    # Build accelerators stored as artifacts (compiler caches, timing caches) are not models.
    return bool(record.metadata.get("internal")) or record.target.endswith("-cache")


def _spec_of(ref: str) -> LoadedSpec | None:
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")) and path.is_file():
        from rmbuild.declare.spec import load_model_spec

        return load_model_spec(path)
    return None


def _declared_order(spec: LoadedSpec | None, records: list[ArtifactRecord]) -> list[str] | None:
    """model.yaml's ``serve.order``: of the file given, else of the file the newest artifact
    was built from (where it is still there and still valid)."""
    if spec is not None:
        return spec.spec.serve.order if spec.spec.serve else None
    for record in sorted(records, key=lambda r: r.created_at, reverse=True):
        path = record.metadata.get("spec_file")
        if path:
            with contextlib.suppress(RmbuildError, OSError):
                found = _spec_of(str(path))
                if found is not None and found.spec.name == record.model:
                    return found.spec.serve.order if found.spec.serve else None
            break
    return None


def _records(store: Store, ref: str, spec: LoadedSpec | None) -> tuple[str, list[Any], set[str]]:
    """The model's name, its stored artifacts (not yet narrowed to the last stages) and the
    aliases that name it."""
    if spec is not None:
        name = spec.spec.name
        records = [
            r for r in store.list(model=name) if r.target in spec.spec.targets and not _internal(r)
        ]
        return name, records, set()
    records = [r for r in store.list(model=ref) if not _internal(r)]
    if records:
        return ref, records, set()
    from rmbuild.storage.store import resolve

    try:
        record = resolve(store, ref)  # an alias or an artifact id names one artifact
    except ArtifactNotFound:
        raise ArtifactNotFound(
            f"nothing to serve for {ref!r}: it is not a model.yaml, a model name with "
            "stored artifacts, an alias or an artifact id",
            hint="`rmbuild ls` lists what is stored; `rmbuild compile model.yaml "
            "--target T` builds one, `rmbuild pull MODEL:TARGET` fetches one",
        ) from None
    return record.model, [record], {ref}


def resolve_model(
    store: Store,
    ref: str,
    *,
    order: tuple[str, ...] | None = None,
    devices: list[dict[str, Any]] | None = None,
    notes: Callable[[str], None] | None = None,
    remote: Remote | None = None,
    build: bool = False,
) -> LogicalModel:
    """What ``ref`` (a model.yaml, model name, alias or artifact id) serves here, best first.

    ``order`` overrides the device classes' order (default: model.yaml's ``serve.order``,
    else the policy's). ``remote``: the model's targets this store lacks are pulled from it
    first. ``build`` (a model.yaml only): the best target this machine can run, build and
    does not hold is compiled first. ``notes`` is told of each pull, build or failure to.
    """
    from rmbuild.planning import policy

    say = notes or (lambda _message: None)
    spec = _spec_of(ref)
    if build and spec is None:
        raise UsageError(
            f"--build needs a model.yaml to build from, not {ref!r}",
            hint="give the model.yaml: `rmbuild serve path/to/model.yaml --build`",
        )
    if remote is not None:
        pull_missing(store, ref, spec, remote, say)
    name, records, aliases = _records(store, ref, spec)
    start = spec.root if spec is not None else None
    chosen = policy.serve_order(order or _declared_order(spec, records))
    if build and spec is not None:
        if build_best(store, spec, records, chosen, devices, say):
            name, records, aliases = _records(store, ref, spec)
    model = LogicalModel(name=name, aliases=aliases, order=chosen)
    finals = _finals(records) if len(records) > 1 else records
    if not finals:
        raise ArtifactNotFound(
            f"model {model.name!r} has no stored artifact to serve",
            hint="build one with `rmbuild compile model.yaml --target T` (or serve with "
            "--build), or pull one with `rmbuild pull MODEL:TARGET --remote URL` (or serve "
            "with --remote URL)",
        )
    candidates = [Candidate(r, _resource(r, start)) for r in finals]
    if len(aliases) == 1:
        # One artifact named by its id or alias: it serves whatever its class.
        model.candidates = candidates
    else:
        model.candidates, model.excluded = policy.rank_runnable(
            candidates, order=chosen, devices=devices
        )
    if not model.candidates:
        raise BackendUnavailable(
            f"no stored artifact of model {model.name!r} can run on this machine",
            context=[f"{c.label}: {why}" for c, why in model.excluded],
            hint=f"serving order: {', '.join(chosen)}; build a target this machine runs "
            "(`rmbuild compile model.yaml --target cpu`), or change serve.order in model.yaml",
        )
    for c in model.candidates:
        model.aliases.update(getattr(c.record, "aliases", None) or [])
    return model


def pull_missing(
    store: Store, ref: str, spec: LoadedSpec | None, remote: Remote, say: Callable[[str], None]
) -> list[str]:
    """Pull from ``remote`` the newest artifact of each of the model's targets this store
    holds none of; returns the keys pulled. A remote that cannot be read is a note, not a
    failure: what is stored here still serves."""
    from artifact_store import StoreError
    from artifact_store.errors import ArtifactNotFound as StoreNotFound

    name = spec.spec.name if spec is not None else ref
    held = {r.target for r in store.list(model=name) if not _internal(r)}
    pulled: list[str] = []
    try:
        if spec is not None:
            wanted = [f"{name}:{t}" for t in spec.spec.targets if t not in held]
        else:
            # Only the newest entry of each target: what `pull MODEL:TARGET` would take.
            entries = [e for e in remote.list() if e.model == name and e.target not in held]
            wanted = sorted({f"{name}:{e.target}" for e in entries})
        for pair in wanted:
            try:
                entry = remote.resolve(pair)
            except StoreNotFound:
                continue  # the remote has none of this target either
            if entry.metadata.get("internal"):
                continue
            record = remote.pull(store, entry)
            pulled.append(record.key)
            say(f"pulled {pair} ({record.key[:12]}) from {remote.display}")
    except StoreError as exc:
        say(f"remote {remote.display}: {exc}; serving what is stored here")
    return pulled


def build_best(
    store: Store,
    spec: LoadedSpec,
    records: list[ArtifactRecord],
    order: tuple[str, ...],
    devices: list[dict[str, Any]] | None,
    say: Callable[[str], None],
) -> bool:
    """``--build``: compile the best-ranked target of ``spec`` that runs here and is not
    stored, where it ranks ahead of every stored one and its toolchains are installed.
    Returns whether something was built. A build that fails is a note: what is stored still
    serves (and nothing stored at all is the caller's error)."""
    from rmbuild.build import build, plan
    from rmbuild.declare.profiles import find_profile
    from rmbuild.planning import policy

    @dataclass
    class _Target:
        name: str
        resource: str
        backend: str
        created: float = 0.0

    stored = {r.target for r in _finals(records)} if records else set()
    targets = []
    for tname, target in spec.spec.targets.items():
        profile = find_profile(target.profile, spec.root).profile
        targets.append(_Target(tname, profile.resource, profile.backend))
    ranked, _ = policy.rank_runnable(targets, order=order, devices=devices)
    for target in ranked:
        if target.name in stored:
            return False  # the best runnable target is stored already
        chain = plan(spec, target.name)
        gaps = policy.chain_gaps([stage.toolchain for stage in chain], system_tools=False)
        if gaps:
            say(f"not building {target.name}: {'; '.join(policy.gap_lines(gaps))}")
            continue
        say(f"building {spec.spec.name}:{target.name} (--build)")
        try:
            build(spec, target.name, store=store)
        except RmbuildError as exc:
            say(f"building {target.name} failed: {str(exc).splitlines()[0]}")
            continue
        return True
    return False


def load_first(
    model: LogicalModel,
    *,
    store: Store,
    options: dict[str, Any] | None = None,
    skip: int = 0,
    on_failure: Callable[[int, str], None] | None = None,
) -> tuple[int, BackendSession]:
    """Load the first candidate from index ``skip`` on that loads here; each one that does
    not gets its reason recorded (and ``on_failure(index, reason)`` is told). None loads:
    BackendUnavailable listing every reason."""
    from rmbuild.loading import load

    for i, candidate in enumerate(model.candidates[skip:], start=skip):
        try:
            return i, load(candidate.record.key, store=store, **(options or {}))
        except RmbuildError as exc:
            candidate.failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if on_failure is not None:
                on_failure(i, candidate.failure)
    raise BackendUnavailable(
        f"no stored artifact of model {model.name!r} can run on this machine",
        context=[f"{c.label}: {c.failure}" for c in model.candidates[skip:]]
        + [f"{c.label}: {why}" for c, why in model.excluded],
        hint="build a target this machine runs (`rmbuild compile model.yaml --target cpu`), "
        "or pass --device to run on another device",
    )
