"""Building one target: its planned stages -> keyed artifacts in the store.

:mod:`rmbuild.planning.stages` plans a target's chain of stages and computes each one's action
key; :mod:`rmbuild.build.walk` keys the chain from each stage's action result and obtains the
files of the stages that need them (the last one, and the input of any stage to be built): on
a hit reuse the artifact; on a miss take the key's lock and run the stage
(:func:`rmbuild.build.running.run_stage`). :func:`build` is re-exported by :mod:`rmbuild.build`
with the other names library callers know from there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rmbuild.build.running import BuildResult, Reporter, SilentReporter, check_installed, note
from rmbuild.build.walk import Walk
from rmbuild.declare.profiles import read_once
from rmbuild.planning import plancache
from rmbuild.planning.stages import plan, source_digest

if TYPE_CHECKING:
    from artifact_store import Store
    from artifact_store.remote import Remote
    from rmbuild.declare.spec import LoadedSpec


@read_once()  # a library caller's build reads each profile once, as compile does
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

    ``retry_failed=False`` (``--no-retry-failed``) refuses with a ToolError (exit 4)
    a stage whose key already failed with the same toolchain, naming that failure's log; by
    default a recorded failure is simply retried.

    ``remote``: a miss is first looked up there and pulled; what is built is pushed,
    and at the end what the remote lacks of the target's artifact (a hit too) is pushed.

    ``readonly`` (``--cache-policy readonly``): never run a tool; a stage that is not
    stored raises :class:`~rmbuild.errors.ReadOnlyMiss` (exit 5).

    ``rebuild`` forces every stage to run again and replace its stored artifact.
    It may be the moment the rebuild began instead of True: an artifact (re)built since then
    counts as rebuilt, so a stage shared by several targets is rebuilt once.
    """
    reporter = reporter or SilentReporter()
    since = datetime.now(UTC) if rebuild is True else (rebuild or None)
    chain = plan(spec, target)
    # What a backend can refuse from a stage alone, before any tool of the chain runs
    # (TensorRT 11 with TensorRT 10's precision flags is exit 3, not a trtexec failure after
    # the export): BackendPlugin.check_stage.
    for stage in chain:
        stage.plugin.check_stage(stage.profile, dict(stage.flags), stage.toolchain)
    check_installed(spec, target, chain)
    # What the key depends on, stat'ed before the keys are computed (the plan cache).
    snapshot = plancache.snapshot(spec, target, chain)
    walk = Walk(spec, target, chain, store, reporter, since, readonly, remote, retry_failed)
    results = walk.run(source_digest(spec, store))
    plancache.remember(snapshot, store, results)
    if remote is not None:
        # Hits too: what the remote lacks (built before it was configured, or while it was
        # down) is pushed, so the library, every executor and the CLI's fast path (which ends
        # with the same call) leave the team's cache alike.
        from rmbuild.storage import remotes

        last = results[-1]
        if remotes.share(remote, store, [last.key]):
            note(reporter, last.profile, last.key, f"pushed to {remote.display}")
    return BuildResult(spec.spec.name, target, results)
