"""The logical model: what ``rmbuild serve NAME`` means, and which stored artifact answers.

The user names a model.yaml, a model name, an alias or an artifact id. A name or a model.yaml
means every target of that model whose artifact is stored here; an alias or an id means that
artifact. Candidates are ordered by device class (NPU, then GPU, then CPU, then a remote
server, unless the call gives its own order), newest first within a class, and the first one
that loads on this machine serves; the others are kept, in order, for fallback. Nothing is
compiled: a serving host only reads the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.errors import ArtifactNotFound, BackendUnavailable, RmbuildError

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store
    from rmbuild.runtime.session import BackendSession

DEFAULT_ORDER = ("npu", "gpu", "cpu", "pim", "remote", "any")


@dataclass
class Candidate:
    """One stored artifact that could serve the model, and why it could not where it failed."""

    record: ArtifactRecord
    resource: str
    failure: str = ""

    @property
    def label(self) -> str:
        return f"{self.record.target} ({self.record.key[:12]}, {self.record.backend})"


@dataclass
class LogicalModel:
    """A model name and its candidates, best first."""

    name: str
    candidates: list[Candidate] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)

    def answers_to(self, name: str | None) -> bool:
        """Whether a request's ``model`` field names this model (None: any)."""
        if name is None or name == self.name or name in self.aliases:
            return True
        return any(
            name and c.record.key.startswith(name) and len(name) >= 6 for c in self.candidates
        )


def _resource(record: ArtifactRecord, start: Path | None) -> str:
    """The device class of the profile that made ``record`` ("any" where it is unknown)."""
    from rmbuild.profiles import find_profile

    name = record.metadata.get("profile")
    if not name:
        return "any"
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


def resolve_model(
    store: Store, ref: str, *, order: tuple[str, ...] = DEFAULT_ORDER
) -> LogicalModel:
    """What ``ref`` (a model.yaml, model name, alias or artifact id) serves, best first."""
    from rmbuild.store import resolve

    start: Path | None = None
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")) and path.is_file():
        from rmbuild.spec import load_model_spec

        loaded = load_model_spec(path)
        start = loaded.root
        name = loaded.spec.name
        records = [
            r
            for r in store.list(model=name)
            if r.target in loaded.spec.targets and not _internal(r)
        ]
        model = LogicalModel(name=name)
    else:
        records = [r for r in store.list(model=ref) if not _internal(r)]
        if records:
            model = LogicalModel(name=ref)
        else:
            # Not a model name: an alias or an artifact id names one artifact.
            try:
                record = resolve(store, ref)
            except ArtifactNotFound:
                raise ArtifactNotFound(
                    f"nothing to serve for {ref!r}: it is not a model.yaml, a model name with "
                    "stored artifacts, an alias or an artifact id",
                    hint="`rmbuild ls` lists what is stored; `rmbuild compile model.yaml "
                    "--target T` builds one, `rmbuild pull` fetches one",
                ) from None
            records = [record]
            model = LogicalModel(name=record.model, aliases={ref})
    finals = _finals(records) if len(records) > 1 else records
    if not finals:
        raise ArtifactNotFound(
            f"model {model.name!r} has no stored artifact to serve",
            hint="build one with `rmbuild compile model.yaml --target T` or pull one with "
            "`rmbuild pull MODEL:TARGET --remote URL`",
        )
    rank = {cls: i for i, cls in enumerate(order)}
    candidates = [Candidate(r, _resource(r, start)) for r in finals]
    candidates.sort(
        key=lambda c: (rank.get(c.resource, len(rank)), -c.record.created_at.timestamp())
    )
    model.candidates = candidates
    for c in candidates:
        model.aliases.update(getattr(c.record, "aliases", None) or [])
    return model


def _internal(record: ArtifactRecord) -> bool:
    # Build accelerators stored as artifacts (compiler caches, timing caches) are not models.
    return bool(record.metadata.get("internal")) or record.target.endswith("-cache")


def load_first(
    model: LogicalModel, *, store: Store, options: dict[str, Any] | None = None, skip: int = 0
) -> tuple[int, BackendSession]:
    """Load the first candidate from index ``skip`` on that loads here; each one that does
    not gets its reason recorded. None loads: BackendUnavailable listing every reason."""
    from rmbuild.runtime.loader import load

    for i, candidate in enumerate(model.candidates[skip:], start=skip):
        try:
            return i, load(candidate.record.key, store=store, **(options or {}))
        except RmbuildError as exc:
            candidate.failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    raise BackendUnavailable(
        f"no stored artifact of model {model.name!r} can run on this machine",
        context=[f"{c.label}: {c.failure}" for c in model.candidates],
        hint="build a target this machine runs (`rmbuild compile model.yaml --target cpu`), "
        "or pass --device to run on another device",
    )
