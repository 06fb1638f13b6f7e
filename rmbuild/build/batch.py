"""Building many targets: one after the other, in ``-j N`` worker processes, or as Ray tasks.

:func:`compile_targets` gives each target's outcome: its :class:`~rmbuild.build.BuildResult`,
or a :class:`TargetFailure` that says why it did not build. A target that cannot be built here
(a toolchain or a system tool missing: :class:`~rmbuild.errors.BackendUnavailable`, raised
before any of its tools runs) is *skipped*; any other error *failed* it. By default the run
keeps going past both, so one blocked target does not cost the others (``compile --all``);
``keep_going=False`` stops at the first failure. Errors about the whole run rather than one
target (a cancel, a full disk, an unreachable store) stop it either way.

:func:`compile_spec` is the older entry point: the results, or the first failure raised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.build.running import (  # noqa: F401 - TargetFailure, finished: re-exported
    BuildResult,
    Reporter,
    TargetFailure,
    finished,
)
from rmbuild.build.target import build
from rmbuild.declare.profiles import read_once
from rmbuild.declare.spec import LoadedSpec, load_model_spec
from rmbuild.errors import DiskFull, StoreUnavailable, ToolStopped
from rmbuild.planning.stages import plan

if TYPE_CHECKING:
    from artifact_store import Store
    from artifact_store.remote import Remote


Outcome = BuildResult | TargetFailure


def _stops_the_run(exc: BaseException) -> bool:
    """An error about the whole run, not one target: the next target would meet it too."""
    from artifact_store import errors as store_errors

    if not isinstance(exc, Exception):  # Ctrl-C, SIGTERM: never swallowed
        return True
    return isinstance(
        exc,
        (
            ToolStopped,
            DiskFull,
            StoreUnavailable,
            store_errors.DiskFull,
            store_errors.StoreUnavailable,
        ),
    )


def _counts(outcome: Outcome, strict: bool) -> bool:
    """Does this outcome stop a fail-fast run? A failure does; a skip only when strict."""
    return isinstance(outcome, TargetFailure) and (strict or not outcome.skipped)


def _build_worker(
    spec_path: str,
    target: str,
    root: str,
    url: str | None,
    reporter: Reporter | None,
    rebuild: datetime | bool = False,
    readonly: bool = False,
    remote: Remote | None = None,
    retry_failed: bool = True,
) -> BuildResult:
    """One target in a worker process (or a Ray task), with its own store handle
    (connections don't fork)."""
    from artifact_store import Store

    with Store(root, url) as store:
        return build(
            load_model_spec(spec_path),
            target,
            store=store,
            reporter=reporter,
            rebuild=rebuild,
            readonly=readonly,
            remote=remote,
            retry_failed=retry_failed,
        )


@read_once()  # every target's plan, twice each, reads a profile file once
def compile_targets(
    spec: LoadedSpec | str | Path,
    targets: list[str] | None = None,
    *,
    store: Store,
    reporter: Reporter | None = None,
    jobs: int = 1,
    rebuild: bool = False,
    readonly: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    remote: Remote | None = None,
    retry_failed: bool = True,
    keep_going: bool = True,
    strict: bool = False,
) -> list[Outcome]:
    """Build ``targets`` (default: every target) of a model.yaml; each one's outcome, in the
    order of ``targets``.

    ``keep_going`` (the default) builds every target that can be built. ``keep_going=False``
    stops at the first target that failed (``strict``: or was skipped): the targets not started
    yet are left out of the outcomes. A bad model.yaml is raised before anything runs; an error
    about the whole run (see the module docstring) is raised as it happens. With ``jobs > 1``
    targets build in worker processes (``reporter`` must then be picklable); stages they share
    meet at the key's lock, so each runs once. ``executor="ray"`` sends each target to a Ray
    cluster as a task running the same worker function; every task runs to its end there.
    ``rebuild``, ``readonly``, ``remote`` and ``retry_failed`` are :func:`rmbuild.build.build`'s.
    """
    if not isinstance(spec, LoadedSpec):
        spec = load_model_spec(spec)
    names = targets or list(spec.spec.targets)
    since: datetime | bool = datetime.now(UTC) if rebuild else False
    for name in names:
        plan(spec, name)  # spec errors first, before any tool, worker or task starts
    model = spec.spec.name
    if executor == "ray":
        from rmbuild.build.executors.ray import run_on_ray

        raw = run_on_ray(
            spec,
            names,
            root=str(store.root),
            url=store.index_url,
            reporter=reporter,
            rebuild=since,
            readonly=readonly,
            address=ray_address,
            remote=remote,
            retry_failed=retry_failed,
        )
        return [_outcome(model, name, r) for name, r in zip(names, raw, strict=True)]
    if jobs <= 1 or len(names) == 1:
        outcomes: list[Outcome] = []
        for name in names:
            try:
                outcomes.append(
                    build(
                        spec,
                        name,
                        store=store,
                        reporter=reporter,
                        rebuild=since,
                        readonly=readonly,
                        remote=remote,
                        retry_failed=retry_failed,
                    )
                )
            except Exception as exc:
                if _stops_the_run(exc):
                    raise
                outcomes.append(TargetFailure(model, name, exc))
                if not keep_going and _counts(outcomes[-1], strict):
                    break
        return outcomes
    return _in_processes(
        spec,
        names,
        store=store,
        reporter=reporter,
        jobs=jobs,
        args=(since, readonly, remote),
        retry_failed=retry_failed,
        keep_going=keep_going,
        strict=strict,
    )


def _outcome(model: str, target: str, result: Any) -> Outcome:
    if isinstance(result, BaseException):
        if _stops_the_run(result):
            raise result
        return TargetFailure(model, target, result)
    return result


def _in_processes(
    spec: LoadedSpec,
    names: list[str],
    *,
    store: Store,
    reporter: Reporter | None,
    jobs: int,
    args: tuple[Any, ...],
    retry_failed: bool,
    keep_going: bool,
    strict: bool,
) -> list[Outcome]:
    """``-j N``: one worker process per target at a time (spawned: connections don't fork)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    done: dict[str, Outcome] = {}
    stop: BaseException | None = None
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {
            pool.submit(
                _build_worker,
                str(spec.path),
                name,
                str(store.root),
                store.index_url,
                reporter,
                *args,
                retry_failed=retry_failed,
            ): name
            for name in names
        }
        pending = set(futures)
        while pending:
            finished_now, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished_now:
                if future.cancelled():
                    continue
                try:
                    result: Any = future.result()
                except Exception as exc:  # noqa: BLE001 - sorted out just below
                    result = exc
                if isinstance(result, BaseException) and _stops_the_run(result):
                    stop = stop or result
                    continue
                done[futures[future]] = _outcome(spec.spec.name, futures[future], result)
                if stop is None and not keep_going and _counts(done[futures[future]], strict):
                    # Fail fast: targets not started yet never start; running ones finish.
                    for other in pending:
                        other.cancel()
            if stop is not None:
                for other in pending:
                    other.cancel()
    if stop is not None:
        raise stop
    return [done[name] for name in names if name in done]


def compile_spec(
    spec: LoadedSpec | str | Path,
    targets: list[str] | None = None,
    *,
    store: Store,
    reporter: Reporter | None = None,
    jobs: int = 1,
    rebuild: bool = False,
    readonly: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    remote: Remote | None = None,
    retry_failed: bool = True,
) -> list[BuildResult]:
    """Library entry point of ``rmbuild compile``: build targets of a model.yaml; the results,
    or the first failure raised.

    One after the other, the first failure stops the run. With ``jobs > 1`` (worker
    processes) or ``executor="ray"`` every target runs to its end and the first failure is
    raised after all have finished. :func:`compile_targets` gives each target's outcome
    instead, and keeps going past a target that cannot be built here.
    """
    if not isinstance(spec, LoadedSpec):
        spec = load_model_spec(spec)
    names = targets or list(spec.spec.targets)
    parallel = executor == "ray" or (jobs > 1 and len(names) > 1)
    return finished(
        compile_targets(
            spec,
            names,
            store=store,
            reporter=reporter,
            jobs=jobs,
            rebuild=rebuild,
            readonly=readonly,
            executor=executor,
            ray_address=ray_address,
            remote=remote,
            retry_failed=retry_failed,
            keep_going=parallel,
        )
    )
