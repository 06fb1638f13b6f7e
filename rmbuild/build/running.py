"""Running one stage of a build, and what a build reports and returns.

:func:`run_stage` runs a stage's tool through the BinaryCompilerAdapter in a temp dir, ingests
its outputs and writes the index row last; :func:`usable` is the hit check every stored
artifact passes; :func:`key_lock` the per-key lock two builders of one key share. The
:class:`Reporter` protocol, :class:`StageResult`, :class:`BuildResult` and a batch's
:class:`TargetFailure` live here, below :mod:`rmbuild.build.walk` (which walks a chain with
these), :mod:`rmbuild.build.target` (one target), :mod:`rmbuild.build.batch` and
:mod:`rmbuild.build.executors.ray` (many targets), so that none of those imports another one
back.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from artifact_store import ArtifactRecord, LockTimeout, Store
from artifact_store.errors import UnsafeTree
from rmbuild.build import compcache
from rmbuild.declare import sources
from rmbuild.declare.spec import FlagValue, LoadedSpec
from rmbuild.errors import BackendUnavailable, ToolError, UnsafeToolOutput
from rmbuild.keys import ActionKey
from rmbuild.planning.stages import PlannedStage
from rmbuild.storage import failures
from rmbuild.toolrun.adapter import BinaryCompilerAdapter
from rmbuild.trust import provenance
from rmbuild.version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable


class Reporter(Protocol):
    """Progress callbacks; the CLI renders them, the library stays silent by default."""

    def stage_start(self, target: str, index: int, total: int, profile: str, key: str) -> None: ...
    def stage_waiting(self, profile: str, key: str) -> None: ...
    def stage_line(self, line: str) -> None: ...
    def stage_done(self, profile: str, key: str, hit: bool, seconds: float) -> None: ...
    def stage_note(self, profile: str, key: str, message: str) -> None:
        """Why a stage is (re)built although a record exists: a corrupt artifact, a failure
        recorded earlier, ``--rebuild``; one line the CLI shows under the stage."""
        ...


class SilentReporter:
    """A reporter that shows nothing; subclass it to implement only some callbacks."""

    def stage_start(self, target: str, index: int, total: int, profile: str, key: str) -> None:
        pass

    def stage_waiting(self, profile: str, key: str) -> None:
        pass

    def stage_line(self, line: str) -> None:
        pass

    def stage_done(self, profile: str, key: str, hit: bool, seconds: float) -> None:
        pass

    def stage_note(self, profile: str, key: str, message: str) -> None:
        pass


def notes(reporter: Reporter, profile: str, key: str) -> Callable[[str], None]:
    return lambda message: note(reporter, profile, key, message)


def note(reporter: Reporter, profile: str, key: str, message: str) -> None:
    reporter.stage_note(profile, key, message)


@dataclass(frozen=True)
class StageResult:
    """One stage of a build. ``record`` is None for an upstream stage whose files were not
    needed and that this store does not hold: its key and output (``manifest_digest``, its
    action result) were known without them. Otherwise it is the stage's artifact row."""

    profile: str
    key: str
    hit: bool
    seconds: float
    record: ArtifactRecord | None
    manifest_digest: str = ""

    def __post_init__(self) -> None:
        if not self.manifest_digest and self.record is not None:
            object.__setattr__(self, "manifest_digest", self.record.manifest_digest)


@dataclass(frozen=True)
class BuildResult:
    """The outcome of building one target: every stage, the last one being the artifact."""

    model: str
    target: str
    stages: list[StageResult]

    @property
    def artifact(self) -> ArtifactRecord:
        record = self.stages[-1].record
        assert record is not None  # the last stage's files are always obtained
        return record

    @property
    def hit(self) -> bool:
        return all(stage.hit for stage in self.stages)


# ----------------------------------------------------------------------------- running


def _carry(profile_carry: list[str], source: Path, out: Path) -> None:
    # No link leaving the input is carried into the store.
    sources.carry(profile_carry, source, out)


def _derived_flags(stage: PlannedStage, input_path: Path) -> dict[str, FlagValue]:
    """Flags the stage's backend derives from its input before the tool runs
    (:meth:`~rmbuild.backends.base.BackendPlugin.stage_flags`); only flags the profile
    declares and leaves null are filled, so a value the user set always wins.
    """
    derived = stage.plugin.stage_flags(stage.profile, dict(stage.flags), input_path) or {}
    return {k: v for k, v in derived.items() if k in stage.flags and stage.flags[k] is None}


def run_stage(
    *,
    spec: LoadedSpec,
    target: str,
    stage: PlannedStage,
    key: ActionKey,
    key_hex: str,
    input_path: Path,
    parents: list[str],
    store: Store,
    reporter: Reporter,
    replace: bool,
    fresh: bool = False,
) -> ArtifactRecord:
    profile = stage.profile
    adapter = BinaryCompilerAdapter(profile, stage.toolchain, spec.root)
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    # The log lives outside the build dir so a failure's log survives the cleanup; it is never
    # on the hit path (a failed build writes no index row, so it cannot poison the cache).
    log_dir = store.root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{key_hex[:16]}-{started_at:%Y%m%dT%H%M%S}-{os.getpid()}.log"
    with store.build_dir(f"build-{key_hex[:12]}-") as tmp, contextlib.ExitStack() as ingest:
        out = tmp / "out"
        out.mkdir()
        # A vendor compiler's cache, kept as a keyed artifact of its own.
        cache_fed = compcache.safely(compcache.feed, store, stage, tmp)
        # Flags a backend derives from the input at run time (trtexec's shape
        # profiles from the graph's kv_layout.json). They are a function of the keyed input
        # and flags, so they stay out of the key; the argv recorded below shows them.
        derived = _derived_flags(stage, input_path)
        # The source's digests for the provenance, while the index answers: once the tool ran,
        # only recording its output may need to wait for the index.
        source_deps = None if parents else provenance.source_deps(spec, store)
        command = adapter.render_for_run(
            {**stage.flags, **derived}, inputs={"model": input_path}, output=out, workdir=tmp
        )
        try:
            run = adapter.run(command, workdir=tmp, log_path=log_path, on_line=reporter.stage_line)
            adapter.check_outputs(out, log_path)
        except ToolError as exc:
            # Failures as data: recorded, never a hit, retried next time.
            failures.record(store, spec, target, stage, key, key_hex, exc, log_path)
            raise
        _carry(profile.carry, input_path, out)
        stage.plugin.prepare_outputs(profile, input_path, out)
        cache_stored = compcache.safely(compcache.update, store, stage, tmp, spec.spec.name)
        t1 = time.monotonic()
        # From the first stored blob to the index row, gc cannot sweep.
        ingest.enter_context(store.writing())
        try:
            # fresh (a forced rebuild): our bytes replace any stored copy, damaged or not.
            manifest = store.put_tree(out, move=True, fresh=fresh)
        except UnsafeTree as exc:  # the tool's output, so the tool's fault
            raise UnsafeToolOutput(
                f"{profile.tool.name} left an output the store refuses: {exc}",
                tool=profile.tool.name,
                log_path=log_path,
                hint="a tool must leave regular files (or links that stay) inside its output",
            ) from None
        log_digest = store.put_file(log_path, move=True)
        # SLSA provenance of this build (rmbuild.trust.provenance): a blob the row names, so
        # push and pull carry it and `rmbuild sign` can sign it.
        provenance_digest = provenance.record(
            store,
            spec=spec,
            target=target,
            stage=stage,
            key=key,
            key_hex=key_hex,
            manifest=manifest,
            parents=parents,
            argv=command.argv,
            derived=derived,
            log_digest=log_digest,
            started_at=started_at,
            sources=source_deps,
        )
        metadata = {
            "rmbuild_version": __version__,
            "model": spec.spec.name,
            "target": target,
            "profile": profile.name,
            "stage": profile.stage,
            "backend": profile.backend,
            "output_format": profile.output_format,
            "spec_file": str(spec.path),
            "parents": parents,
            "action_key": key.to_dict(),
            "argv": command.argv,
            "flags": dict(stage.flags),
            "runtime_flags": stage.runtime_flags(),
            "derived_flags": derived,
            # Which compiler cache the build was fed and what it stored (`show`).
            "compiler_cache": {"fed": cache_fed, "stored": cache_stored},
            "toolchain": key.toolchain,
            "tool": key.tool,
            "fingerprint": key.fingerprint,
            "started_at": started_at.isoformat(),
            "durations": {
                "tool_s": round(run.duration_s, 3),
                "ingest_s": round(time.monotonic() - t1, 3),
                "total_s": round(time.monotonic() - t0, 3),
            },
            "host": {
                "node": platform.node(),
                "machine": platform.machine(),
                "system": platform.system(),
            },
            "log": log_digest,
            "provenance": provenance_digest,
            "blobs": [log_digest, provenance_digest],
        }
        return store.commit(
            key_hex,
            manifest,
            model=spec.spec.name,
            target=target,
            backend=profile.backend,
            metadata=metadata,
            replace=replace,
        )


def usable(store: Store, key_hex: str) -> tuple[ArtifactRecord | None, str | None]:
    """The artifact for ``key_hex`` if it may be served; else None and why not (or None).

    Every hit passes the store's cheap integrity check: each blob's inode, mtime
    and size as recorded at ingest; a blob that moved is re-hashed. A lost or damaged blob is
    quarantined and its artifacts marked corrupt in this store (never in the index, which other
    stores may share), so they are rebuilt, never served and never left blocking their key.
    A same-size rewrite with its mtime put back passes this check;
    `rmbuild verify` (a full re-hash) finds it, and `compile --rebuild` replaces it.
    """
    record = store.get(key_hex)
    if record is None:
        return None, None
    problems = store.check(record)
    if problems and problems[0].absent:
        # A shared index: another store built it. Not damage, and nothing is marked; this
        # store fetches it from the remote or builds its own copy.
        return None, "in the shared index, but another store holds its files; not this one"
    if problems:
        return None, f"stored artifact is corrupt ({problems[0]}); rebuilding"
    return record, None


@contextlib.contextmanager
def key_lock(store: Store, key_hex: str, name: str, reporter: Reporter, timeout: float):
    """Hold the key's lock; say so when another process is building the same key."""
    try:
        lock = store.lock(key_hex, timeout=0)
        lock.__enter__()
    except LockTimeout:
        reporter.stage_waiting(name, key_hex)
        lock = store.lock(key_hex, timeout=timeout)
        lock.__enter__()
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def check_installed(spec: LoadedSpec, target: str, chain: list[PlannedStage]) -> None:
    """Exit 7 before anything runs when a toolchain of the chain is not installed, naming
    every prerequisite the chain lacks (system tools too) with the commands that get them.

    Only the environments are checked here (a marker read, no process): a cache hit stays a
    hit's cost, and the system tools are checked at the first miss.
    """
    from rmbuild.planning import policy
    from rmbuild.toolrun import provision

    toolchains = [stage.toolchain for stage in chain]
    if all(provision.status(tc).installed for tc in toolchains):
        return
    raise policy.unavailable(f"{spec.spec.name}:{target}", policy.chain_gaps(toolchains))


def check_system_tools(spec: LoadedSpec, target: str, chain: list[PlannedStage]) -> None:
    """Exit 7 when a system tool of a stage still to run is missing (see :func:`build`)."""
    from rmbuild.planning import policy
    from rmbuild.toolrun import provision

    toolchains = list({stage.toolchain.name: stage.toolchain for stage in chain}.values())
    if any(provision.missing_system_tools(tc) for tc in toolchains if tc.system_tools):
        raise policy.unavailable(f"{spec.spec.name}:{target}", policy.chain_gaps(toolchains))


@dataclass(frozen=True)
class TargetFailure:
    """A target that did not build, and the error that says why."""

    model: str
    target: str
    error: BaseException

    @property
    def skipped(self) -> bool:
        """Something it needs is missing here (a toolchain, a system tool): none of its tools
        ran for it and no failure was recorded."""
        return isinstance(self.error, BackendUnavailable)


def finished(outcomes: list[Any]) -> list[BuildResult]:
    """The results of targets that all built, or the first failure among ``outcomes``
    (:class:`TargetFailure` or a bare exception), raised now."""
    for outcome in outcomes:
        if isinstance(outcome, TargetFailure):
            raise outcome.error
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if isinstance(o, BuildResult)]
