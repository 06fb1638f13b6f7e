"""``compile --executor ray``: one Ray task per target on an existing Ray cluster (issue 9).

The task is :func:`rmbuild.batch._build_worker`, the very function ``-j N`` runs in its local
worker processes: it opens the store (and the index) named by the driver, builds the target's
stages and returns the :class:`~rmbuild.build.BuildResult`. Builders of one key meet at the key's
lock in the store and at the index (on a cluster: a shared store, or the remote and a
PostgreSQL index), so a stage shared by several targets runs its tool once. Ray schedules and
places the tasks; rmbuild adds no scheduler, queue or RPC of its own.

Resources per task: ``num_cpus=1``, and ``num_gpus=1`` for a profile whose build needs the
device (``resource: gpu`` with a backend that compiles on the device, e.g. TensorRT's builder);
cross-compiling backends (IREE's cuda target) need none. ``ray.init`` is called only when the
driver is not connected yet (``address``: ``auto``, ``ray://…`` or None to start a local one).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from rmbuild.errors import BackendUnavailable

if TYPE_CHECKING:
    from rmbuild.build import BuildResult
    from rmbuild.spec import LoadedSpec

# Backends whose compiler runs on the device itself, so a task needs a GPU on its node.
BUILDS_ON_DEVICE = frozenset({"tensorrt"})


def task_resources(spec: LoadedSpec, target: str) -> dict[str, float]:
    """Ray resources of the task that builds ``target`` (see the module docstring)."""
    from rmbuild.build import plan

    needs_gpu = any(
        s.profile.resource == "gpu" and s.profile.backend in BUILDS_ON_DEVICE
        for s in plan(spec, target)
    )
    return {"num_cpus": 1, "num_gpus": 1 if needs_gpu else 0}


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendUnavailable(
            "--executor ray needs Ray, which is not installed",
            hint="pip install 'rmbuild[ray]'",
        ) from None
    return ray


def compile_on_ray(
    spec: LoadedSpec,
    names: list[str],
    *,
    root: str,
    url: str | None,
    reporter: Any,
    rebuild: datetime | bool,
    readonly: bool = False,
    address: str | None = None,
    remote: Any = None,
    retry_failed: bool = True,
) -> list[BuildResult]:
    """Build ``names`` as Ray tasks; every task runs to its end, the first failure is raised
    after all have finished (as with ``-j N``)."""
    from rmbuild.batch import finished

    return finished(
        run_on_ray(
            spec,
            names,
            root=root,
            url=url,
            reporter=reporter,
            rebuild=rebuild,
            readonly=readonly,
            address=address,
            remote=remote,
            retry_failed=retry_failed,
        )
    )


def run_on_ray(
    spec: LoadedSpec,
    names: list[str],
    *,
    root: str,
    url: str | None,
    reporter: Any,
    rebuild: datetime | bool,
    readonly: bool = False,
    address: str | None = None,
    remote: Any = None,
    retry_failed: bool = True,
) -> list[BuildResult | BaseException]:
    """Build ``names`` as Ray tasks, each to its end; per target (in order) its result or the
    exception its task raised (:func:`rmbuild.batch.compile_targets` sorts them out)."""
    from rmbuild.batch import _build_worker

    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    task = ray.remote(_build_worker)
    refs = [
        task.options(**task_resources(spec, name), max_retries=0).remote(
            str(spec.path), name, root, url, reporter, rebuild, readonly, remote, retry_failed
        )
        for name in names
    ]
    outcomes: list[Any] = []
    for ref in refs:
        try:
            outcomes.append(ray.get(ref))
        except ray.exceptions.RayTaskError as exc:
            # The task's own exception (an RmbuildError keeps its exit code and message).
            cause = exc.as_instanceof_cause()
            original = getattr(exc, "cause", None)
            outcomes.append(original if isinstance(original, BaseException) else cause)
        except Exception as exc:  # noqa: BLE001 - the caller decides what it stops
            outcomes.append(exc)
    return outcomes
