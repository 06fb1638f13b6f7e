"""Running builds: the planned stages of a target -> keyed artifacts in the store.

:mod:`rmbuild.stages` plans a target's chain of stages and computes each one's action key. For
each stage, in order: on a hit reuse the artifact; on a miss take the key's lock, run the tool
through the BinaryCompilerAdapter in a temp dir, ingest the outputs and write the index row
last. ``plan``, ``action_key``, ``source_digest`` and ``PlannedStage`` are re-exported here for
callers of the library that know them from this module, as are ``compile_spec`` and the other
names of :mod:`rmbuild.batch` (building many targets).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import rmbuild
from artifact_store import ArtifactRecord, LockTimeout, Store
from artifact_store.errors import UnsafeTree
from rmbuild import compcache, failures, plancache, sources
from rmbuild.adapter import BinaryCompilerAdapter
from rmbuild.errors import ToolError, UnsafeToolOutput
from rmbuild.keys import ActionKey
from rmbuild.plugins import get_backend
from rmbuild.results import known_output, on_remote, remember
from rmbuild.spec import FlagValue, LoadedSpec
from rmbuild.stages import PlannedStage, action_key, plan, source_digest

if TYPE_CHECKING:
    from collections.abc import Callable

    from artifact_store.remote import Remote


class Reporter(Protocol):
    """Progress callbacks; the CLI renders them, the library stays silent by default."""

    def stage_start(self, target: str, index: int, total: int, profile: str, key: str) -> None: ...
    def stage_waiting(self, profile: str, key: str) -> None: ...
    def stage_line(self, line: str) -> None: ...
    def stage_done(self, profile: str, key: str, hit: bool, seconds: float) -> None: ...


class SilentReporter:
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


def _notes(reporter: Reporter, profile: str, key: str) -> Callable[[str], None]:
    return lambda message: _note(reporter, profile, key, message)


def _note(reporter: Reporter, profile: str, key: str, message: str) -> None:
    # stage_note is newer than the Reporter protocol; a reporter without it gets a log line.
    note = getattr(reporter, "stage_note", None)
    if note is not None:
        note(profile, key, message)
    else:
        reporter.stage_line(message)


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
    # No link leaving the input is carried into the store (issue 6 #1).
    sources.carry(profile_carry, source, out)


def _derived_flags(stage: PlannedStage, input_path: Path) -> dict[str, FlagValue]:
    """Flags the stage's backend derives from its input before the tool runs (issue 8).

    A backend opts in with ``stage_flags(profile, flags, input_dir) -> dict``; only flags the
    profile declares and leaves null are filled, so a value the user set always wins.
    """
    hook = getattr(get_backend(stage.profile.backend), "stage_flags", None)
    if hook is None:
        return {}
    derived = hook(stage.profile, dict(stage.flags), input_path) or {}
    return {k: v for k, v in derived.items() if k in stage.flags and stage.flags[k] is None}


def _run_stage(
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
        # A vendor compiler's cache, kept as a keyed artifact of its own (issue 7).
        cache_fed = compcache.safely(compcache.feed, store, stage, tmp)
        # Flags a backend derives from the input at run time (issue 8: trtexec's shape
        # profiles from the graph's kv_layout.json). They are a function of the keyed input
        # and flags, so they stay out of the key; the argv recorded below shows them.
        derived = _derived_flags(stage, input_path)
        command = adapter.render_for_run(
            {**stage.flags, **derived}, inputs={"model": input_path}, output=out, workdir=tmp
        )
        try:
            run = adapter.run(command, workdir=tmp, log_path=log_path, on_line=reporter.stage_line)
            adapter.check_outputs(out, log_path)
        except ToolError as exc:
            # Failures as data (issue 9): recorded, never a hit, retried next time.
            failures.record(store, spec, target, stage, key, key_hex, exc, log_path)
            raise
        _carry(profile.carry, input_path, out)
        get_backend(profile.backend).prepare_outputs(profile, input_path, out)
        cache_stored = compcache.safely(compcache.update, store, stage, tmp, spec.spec.name)
        t1 = time.monotonic()
        # From the first stored blob to the index row, gc cannot sweep (issue 6 #9).
        ingest.enter_context(store.writing())
        try:
            # fresh (a forced rebuild): our bytes replace any stored copy, damaged or not.
            manifest = store.put_tree(out, move=True, fresh=fresh)
        except UnsafeTree as exc:  # the tool's output, so the tool's fault (issue 6 #19)
            raise UnsafeToolOutput(
                f"{profile.tool.name} left an output the store refuses: {exc}",
                tool=profile.tool.name,
                log_path=log_path,
                hint="a tool must leave regular files (or links that stay) inside its output",
            ) from None
        log_digest = store.put_file(log_path, move=True)
        metadata = {
            "rmbuild_version": rmbuild.__version__,
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
            # Which compiler cache the build was fed and what it stored (`show`; issue 8).
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
            "blobs": [log_digest],
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


def _usable(store: Store, key_hex: str) -> tuple[ArtifactRecord | None, str | None]:
    """The artifact for ``key_hex`` if it may be served; else None and why not (or None).

    Every hit passes the store's cheap integrity check (issue 6 #8): each blob's inode, mtime
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
def _key_lock(store: Store, key_hex: str, name: str, reporter: Reporter, timeout: float):
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


class _Nested:
    """The reporter of an upstream stage obtained while its downstream stage is on screen (its
    files turned out to be needed after all): its events become that stage's notes, so there
    is one live line at a time."""

    def __init__(self, outer: Reporter, profile: str, key: str) -> None:
        self.outer, self.profile, self.key = outer, profile, key

    def stage_start(self, target: str, index: int, total: int, profile: str, key: str) -> None:
        pass

    def stage_waiting(self, profile: str, key: str) -> None:
        self.outer.stage_waiting(profile, key)

    def stage_line(self, line: str) -> None:
        self.outer.stage_line(line)

    def stage_note(self, profile: str, key: str, message: str) -> None:
        _note(self.outer, self.profile, self.key, f"{profile}: {message}")

    def stage_done(self, profile: str, key: str, hit: bool, seconds: float) -> None:
        what = "cache hit" if hit else f"built in {seconds:.1f} s"
        _note(self.outer, self.profile, self.key, f"its input {profile} ({key[:12]}): {what}")


class _Walk:
    """One target's chain, keyed without the bytes (see :mod:`rmbuild.results`).

    Keys are computed front to back from each upstream stage's *result* (its output manifest
    digest), known from the index or the remote; a stage whose result is unknown is obtained
    (found, pulled or built) before the keys after it can be computed. Of the stages keyed so
    far, the files of the last one are obtained, and, going back, those of the upstream of
    every stage that must be built (stored neither here nor on the remote). Every other stage
    is a hit known by its result alone: none of its files is read, pulled or checked.

    A tool whose output differs from run to run can leave a stage here with other bytes than
    the result the next keys were computed from: those keys are then computed again from the
    bytes at hand, so a key always names the input its stage really had.
    """

    def __init__(
        self,
        spec: LoadedSpec,
        target: str,
        chain: list[PlannedStage],
        store: Store,
        reporter: Reporter,
        since: datetime | None,
        readonly: bool,
        remote: Remote | None,
        retry_failed: bool,
    ) -> None:
        self.spec, self.target, self.chain, self.store = spec, target, chain, store
        self.reporter, self.since, self.readonly = reporter, since, readonly
        self.remote, self.retry_failed = remote, retry_failed
        n = len(chain)
        self.keys: list[tuple[ActionKey, str]] = []
        self.fed: list[str] = [""] * n  # the input digest each stage's key was computed from
        self.outputs: list[str | None] = [None] * n  # each stage's result, once known
        self.here: dict[int, ArtifactRecord] = {}  # stages whose files were obtained
        self.results: list[StageResult | None] = [None] * n
        self.looked: dict[str, tuple[ArtifactRecord | None, str | None]] = {}
        self.tools_checked = False

    # ---- keys ------------------------------------------------------------------------------

    def _rekey(self, i: int, fed: str) -> str:
        stage = self.chain[i]
        key = action_key(stage, {"model": fed}, self.spec.root, hasher=self.store.hash_files)
        entry = (key, key.compute())
        if i < len(self.keys):
            self.keys[i] = entry
        else:
            self.keys.append(entry)
        self.fed[i] = fed
        return entry[1]

    def _key_from(self, first: int, fed: str) -> int:
        """Key stages from ``first`` on as far as results are known; the last one keyed."""
        del self.keys[first:]
        for i in range(first, len(self.chain)):
            key_hex = self._rekey(i, fed)
            if i == len(self.chain) - 1:
                return i
            # --rebuild runs every stage again: no result may stand in for one. (An unreadable
            # remote is said by the pull attempted when the stage is obtained.)
            known = None if self.since else known_output(self.store, self.remote, key_hex)
            self.outputs[i] = known
            if known is None:
                return i
            fed = known
        raise AssertionError("unreachable: the chain has a last stage")

    def _needed(self, first: int, last: int) -> set[int]:
        """Stages ``first..last`` whose files must be here: the last one, and the upstream of
        every needed stage that is to be built."""
        need = {last}
        for i in range(last, first, -1):
            if i in need and self._to_build(i):
                need.add(i - 1)
        return need

    def _to_build(self, i: int) -> bool:
        if self.since:
            return True
        if self.readonly:
            return False  # never built here: a missing stage is refused by _obtain
        key_hex = self.keys[i][1]
        if key_hex not in self.looked:
            self.looked[key_hex] = _usable(self.store, key_hex)
        return self.looked[key_hex][0] is None and not on_remote(self.remote, key_hex)

    # ---- the walk ----------------------------------------------------------------------------

    def run(self, source: str) -> list[StageResult]:
        n = len(self.chain)
        first, fed = 0, source
        while first < n:
            last = self._key_from(first, fed)
            need = self._needed(first, last)
            restart: tuple[int, str] | None = None
            for i in range(first, last + 1):
                if i not in need:
                    self._known(i)
                    continue
                expected = self.outputs[i]  # what the next key was computed from, if known
                record = self._obtain(i, self.reporter)
                if i < last and record.manifest_digest != expected:
                    restart = (i + 1, record.manifest_digest)  # the next keys, computed again
                    break
            first, fed = restart or (last + 1, self.outputs[last] or "")
            for stale in [k for k in self.here if k >= first]:
                del self.here[stale]
        return [r for r in self.results if r is not None]

    def _known(self, i: int) -> None:
        """Report stage ``i`` as a hit known by its result: its files are not needed."""
        t0 = time.monotonic()
        name, key_hex = self.chain[i].profile.name, self.keys[i][1]
        self.reporter.stage_start(self.target, i, len(self.chain), name, key_hex)
        # Bookkeeping of the row, if this store has one (its files are neither read nor checked).
        record = self.store.get(key_hex)
        if record is not None and not self.readonly:
            plancache.record_hit(self.store, record, self.spec.spec.name, self.target)
        seconds = time.monotonic() - t0
        self.reporter.stage_done(name, key_hex, True, seconds)
        output = self.outputs[i] or ""
        self.results[i] = StageResult(name, key_hex, True, seconds, record, output)

    def _obtain(self, i: int, reporter: Reporter) -> ArtifactRecord:
        """Stage ``i``'s files here: stored, pulled from the remote, or built (its upstream's
        files obtained first, if they are not here yet)."""
        t0 = time.monotonic()
        stage, spec, store = self.chain[i], self.spec, self.store
        name, key_hex = stage.profile.name, self.keys[i][1]
        reporter.stage_start(self.target, i, len(self.chain), name, key_hex)
        looked = self.looked.pop(key_hex, None)
        record, why = (None, None) if self.since else (looked or _usable(store, key_hex))
        if why:
            _note(reporter, name, key_hex, why)
        hit = True
        while record is None:
            parent = self.here.get(i - 1) if i > 0 else None
            # Two builders of one key run the tool once: the second waits, then hits. The lock
            # is an flock, so a SIGKILLed holder releases it with its death.
            with _key_lock(store, key_hex, name, reporter, stage.profile.timeout + 120):
                record, why_now = _usable(store, key_hex)
                if self.since and record is not None and record.created_at < self.since:
                    record, why_now = None, "--rebuild: running the tool again"
                if why_now and why_now != why:
                    _note(reporter, name, key_hex, why_now)
                    why = why_now
                if record is None and self.remote is not None and not self.since:
                    # Issue 9: the remote's copy of the key, pulled and verified, is a hit.
                    from rmbuild import remotes

                    record = remotes.fetch(
                        self.remote, store, key_hex, _notes(reporter, name, key_hex)
                    )
                if record is None and self.readonly:
                    from rmbuild.plan import ReadOnlyMiss

                    raise ReadOnlyMiss(
                        f"{spec.spec.name}:{self.target}: stage {name} ({key_hex[:12]}) is not "
                        "in the cache, and the cache policy is readonly (never compile)",
                        hint="pull it from a remote, or build it where compiling is allowed",
                    )
                if record is None and (i == 0 or parent is not None):
                    record = self._build(i, reporter, parent)
                    hit = False
            if record is None:
                # It must be built and its input's files are not here (it was expected from the
                # remote, or its result was known without them): obtain them, then lock again.
                upstream = self.chain[i - 1].profile.name
                _note(reporter, name, key_hex, f"building it needs the files of {upstream}")
                got = self._obtain(i - 1, _Nested(reporter, name, key_hex))
                if got.manifest_digest != self.fed[i]:
                    key_hex = self._rekey(i, got.manifest_digest)
                    said = f"{upstream}'s files differ from its recorded result: key now"
                    _note(reporter, name, key_hex, f"{said} {key_hex[:12]}")
                    record, why = _usable(store, key_hex)
        if hit and not self.readonly:
            # Also when the hit was found only under the lock, because another job built it
            # meanwhile (issue 6 #15: `compile --all -j 2` lost those uses). Not under the
            # readonly cache policy: read-only means no writes, bookkeeping included.
            plancache.record_hit(store, record, spec.spec.name, self.target)
        seconds = time.monotonic() - t0
        reporter.stage_done(name, key_hex, hit, seconds)
        self.results[i] = StageResult(name, key_hex, hit, seconds, record)
        self.here[i] = record
        self.outputs[i] = record.manifest_digest
        return record

    def _build(self, i: int, reporter: Reporter, parent: ArtifactRecord | None) -> ArtifactRecord:
        """Run stage ``i``'s tool (the key's lock is held) and record what it made."""
        stage, spec, store = self.chain[i], self.spec, self.store
        key, key_hex = self.keys[i]
        if not self.retry_failed:
            failures.refuse_known(store, key, key_hex, stage)
        if not self.tools_checked:
            # Before the first tool runs: a missing system tool (the cross gcc an NPU
            # compiler links with) fails fast, not minutes later as the tool's own
            # error and a recorded failure. Only on a miss: each check is a process.
            _check_system_tools(spec, self.target, self.chain[i:])
            self.tools_checked = True
        parents = [parent.key] if parent is not None else []
        # The upstream tree is pinned while the tool reads it: gc neither evicts it nor removes
        # its files meanwhile (issue 6 #9).
        with store.pin(parent.key) if parent is not None else contextlib.nullcontext():
            # Only a miss needs the upstream files; hardlinks make this cheap.
            input_path = spec.source_path if parent is None else store.materialize(parent.key)
            record = _run_stage(
                spec=spec,
                target=self.target,
                stage=stage,
                key=key,
                key_hex=key_hex,
                input_path=input_path,
                parents=parents,
                store=store,
                reporter=reporter,
                # Only a forced rebuild re-points the index row: a copy missing or damaged here
                # is this store's own affair, and commit keeps ours as this store's copy (a
                # shared index).
                replace=self.since is not None,
                fresh=self.since is not None,
            )
        # What the key made, kept apart from the row: it outlives an eviction and lets a
        # downstream key be found without these files.
        remember(store, key_hex, record.manifest_digest, parents, replace=self.since is not None)
        if self.remote is not None:  # issue 9: push what was built
            from rmbuild import remotes

            notes = _notes(reporter, stage.profile.name, key_hex)
            remotes.publish(self.remote, store, key_hex, notes)
        return record


def build(
    spec: LoadedSpec,
    target: str,
    *,
    store: Store,
    reporter: Reporter | None = None,
    rebuild: bool | datetime = False,
    readonly: bool = False,
    remote: Remote | None = None,
    retry_failed: bool = True,
) -> BuildResult:
    """Build (or find in the cache) every stage of ``target``.

    ``retry_failed=False`` (``--no-retry-failed``, issue 9) refuses with a ToolError (exit 4)
    a stage whose key already failed with the same toolchain, naming that failure's log; by
    default a recorded failure is simply retried.

    ``remote`` (issue 9): a miss is first looked up there and pulled; what is built is pushed,
    and at the end what the remote lacks of the target's artifact (a hit too) is pushed.

    ``readonly`` (``--cache-policy readonly``, issue 9): never run a tool; a stage that is not
    stored raises :class:`~rmbuild.plan.ReadOnlyMiss` (exit 5).

    ``rebuild`` forces every stage to run again and replace its stored artifact (issue 6 #8).
    It may be the moment the rebuild began instead of True: an artifact (re)built since then
    counts as rebuilt, so a stage shared by several targets is rebuilt once.
    """
    reporter = reporter or SilentReporter()
    since = datetime.now(UTC) if rebuild is True else (rebuild or None)
    chain = plan(spec, target)
    # What a backend can refuse from a stage alone, before any tool of the chain runs (issue
    # 8: TensorRT 11 with TensorRT 10's precision flags is exit 3, not a trtexec failure after
    # the export). A backend opts in with ``check_stage(profile, flags, toolchain)``.
    for stage in chain:
        check = getattr(get_backend(stage.profile.backend), "check_stage", None)
        if check is not None:
            check(stage.profile, dict(stage.flags), stage.toolchain)
    _check_installed(spec, target, chain)
    # What the key depends on, stat'ed before the keys are computed (issue 9: the plan cache).
    snapshot = plancache.snapshot(spec, target, chain)
    walk = _Walk(spec, target, chain, store, reporter, since, readonly, remote, retry_failed)
    results = walk.run(source_digest(spec, store))
    plancache.remember(snapshot, store, results)
    if remote is not None:
        # Hits too: what the remote lacks (built before it was configured, or while it was
        # down) is pushed, so the library, every executor and the CLI's fast path (which ends
        # with the same call) leave the team's cache alike.
        from rmbuild import remotes

        last = results[-1]
        if remotes.share(remote, store, [last.key]):
            _note(reporter, last.profile, last.key, f"pushed to {remote.display}")
    return BuildResult(spec.spec.name, target, results)


def _check_installed(spec: LoadedSpec, target: str, chain: list[PlannedStage]) -> None:
    """Exit 7 before anything runs when a toolchain of the chain is not installed, naming
    every prerequisite the chain lacks (system tools too) with the commands that get them.

    Only the environments are checked here (a marker read, no process): a cache hit stays a
    hit's cost, and the system tools are checked at the first miss.
    """
    from rmbuild import policy, provision

    toolchains = [stage.toolchain for stage in chain]
    if all(provision.status(tc).installed for tc in toolchains):
        return
    raise policy.unavailable(f"{spec.spec.name}:{target}", policy.chain_gaps(toolchains))


def _check_system_tools(spec: LoadedSpec, target: str, chain: list[PlannedStage]) -> None:
    """Exit 7 when a system tool of a stage still to run is missing (see :func:`build`)."""
    from rmbuild import policy, provision

    toolchains = list({stage.toolchain.name: stage.toolchain for stage in chain}.values())
    if any(provision.missing_system_tools(tc) for tc in toolchains if tc.system_tools):
        raise policy.unavailable(f"{spec.spec.name}:{target}", policy.chain_gaps(toolchains))


# Building many targets lives in rmbuild.batch (which imports build() from here); these names
# stay importable from this module, where library callers have always found them.
_BATCH = frozenset(
    {"TargetFailure", "_build_worker", "compile_spec", "compile_targets", "finished"}
)


def __getattr__(name: str) -> object:
    if name in _BATCH:
        from rmbuild import batch

        return getattr(batch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
