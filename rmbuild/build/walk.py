"""Walking a target's chain of stages, keyed without the bytes (see :mod:`rmbuild.storage.results`).

:func:`rmbuild.build.build` plans the chain and hands it to :class:`Walk`, which computes each
stage's key from its upstream's action result, decides which stages' files are needed, and
obtains those: stored, pulled from the remote, or built by :func:`rmbuild.build.running.run_stage`.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from rmbuild.build import running  # the module: tests replace its usable()
from rmbuild.declare import sources
from rmbuild.planning import plancache
from rmbuild.planning.stages import action_key
from rmbuild.storage import failures
from rmbuild.storage.results import known_output, on_remote, remember

if TYPE_CHECKING:
    from datetime import datetime

    from artifact_store import ArtifactRecord, Store
    from artifact_store.remote import Remote
    from rmbuild.build.running import Reporter, StageResult
    from rmbuild.declare.spec import LoadedSpec
    from rmbuild.keys import ActionKey
    from rmbuild.planning.stages import PlannedStage


class Nested:
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
        running.note(self.outer, self.profile, self.key, f"{profile}: {message}")

    def stage_done(self, profile: str, key: str, hit: bool, seconds: float) -> None:
        what = "cache hit" if hit else f"built in {seconds:.1f} s"
        running.note(
            self.outer, self.profile, self.key, f"its input {profile} ({key[:12]}): {what}"
        )


class Walk:
    """One target's chain, keyed without the bytes (see :mod:`rmbuild.storage.results`).

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
            # remote is said by the pull attempted when the stage is obtained.) A readonly
            # build keeps no remote result here: it writes nothing but what it pulls.
            known = (
                None
                if self.since
                else known_output(self.store, self.remote, key_hex, keep=not self.readonly)
            )
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
            self.looked[key_hex] = running.usable(self.store, key_hex)
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
        self.results[i] = running.StageResult(name, key_hex, True, seconds, record, output)

    def _obtain(self, i: int, reporter: Reporter) -> ArtifactRecord:
        """Stage ``i``'s files here: stored, pulled from the remote, or built (its upstream's
        files obtained first, if they are not here yet)."""
        t0 = time.monotonic()
        stage, spec, store = self.chain[i], self.spec, self.store
        name, key_hex = stage.profile.name, self.keys[i][1]
        reporter.stage_start(self.target, i, len(self.chain), name, key_hex)
        looked = self.looked.pop(key_hex, None)
        record, why = (None, None) if self.since else (looked or running.usable(store, key_hex))
        if why:
            running.note(reporter, name, key_hex, why)
        hit = True
        while record is None:
            parent = self.here.get(i - 1) if i > 0 else None
            # Two builders of one key run the tool once: the second waits, then hits. The lock
            # is an flock, so a SIGKILLed holder releases it with its death.
            with running.key_lock(store, key_hex, name, reporter, stage.profile.timeout + 120):
                record, why_now = running.usable(store, key_hex)
                if self.since and record is not None and record.created_at < self.since:
                    record, why_now = None, "--rebuild: running the tool again"
                if why_now and why_now != why:
                    running.note(reporter, name, key_hex, why_now)
                    why = why_now
                if record is None and self.remote is not None and not self.since:
                    # The remote's copy of the key, pulled and verified, is a hit.
                    from rmbuild.storage import remotes

                    record = remotes.fetch(
                        self.remote, store, key_hex, running.notes(reporter, name, key_hex)
                    )
                if record is None and self.readonly:
                    from rmbuild.errors import ReadOnlyMiss

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
                running.note(reporter, name, key_hex, f"building it needs the files of {upstream}")
                got = self._obtain(i - 1, Nested(reporter, name, key_hex))
                if got.manifest_digest != self.fed[i]:
                    key_hex = self._rekey(i, got.manifest_digest)
                    said = f"{upstream}'s files differ from its recorded result: key now"
                    running.note(reporter, name, key_hex, f"{said} {key_hex[:12]}")
                    record, why = running.usable(store, key_hex)
        if hit and not self.readonly:
            # Also when the hit was found only under the lock, because another job built it
            # meanwhile (`compile --all -j 2` lost those uses). Not under the
            # readonly cache policy: read-only means no writes, bookkeeping included.
            plancache.record_hit(store, record, spec.spec.name, self.target)
        seconds = time.monotonic() - t0
        reporter.stage_done(name, key_hex, hit, seconds)
        self.results[i] = running.StageResult(name, key_hex, hit, seconds, record)
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
            running.check_system_tools(spec, self.target, self.chain[i:])
            self.tools_checked = True
        parents = [parent.key] if parent is not None else []
        # The upstream tree is pinned while the tool reads it: gc neither evicts it nor removes
        # its files meanwhile.
        with store.pin(parent.key) if parent is not None else contextlib.nullcontext():
            # Only a miss needs the upstream files; hardlinks make this cheap.
            input_path = (
                sources.source_path(spec) if parent is None else store.materialize(parent.key)
            )
            record = running.run_stage(
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
        if self.remote is not None:  # Push what was built
            from rmbuild.storage import remotes

            notes = running.notes(reporter, stage.profile.name, key_hex)
            remotes.publish(self.remote, store, key_hex, notes)
        return record
