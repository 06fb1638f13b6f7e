"""``compile --executor ray``: one Ray task per target on an existing Ray cluster.

Each task builds one target with :func:`rmbuild.build.build`, as ``-j N``'s worker processes
do, and returns the :class:`~rmbuild.build.BuildResult`. Builders of one key meet at the key's
lock in the store and at the index, so a stage shared by several targets runs its tool once.
Ray schedules and places the tasks; rmbuild adds no scheduler, queue or RPC of its own.

What a task gets is sent by value (:mod:`rmbuild.build.executors.shipping`), never a path alone:

* a cluster that is this machine (one node, the driver's): the model.yaml's bytes, checked
  against the file; tasks build into the driver's store;
* any other cluster: its nodes do not see this machine's disk, so a task given a path would
  fail, or build into a store of its own node that the driver never sees. Such a run needs a
  remote cache (refused otherwise, exit 2, before any task): the driver sends the project and
  the model source through it as a bundle; each task builds into its node's own store
  (``$RMBUILD_STORE`` there, or the default), with the driver's index only if that is a shared
  server (PostgreSQL), and pushes what it built; the driver then pulls each target's artifact
  into its store.

Resources per task: ``num_cpus=1``, and ``num_gpus=1`` for a profile whose build needs the
device (``resource: gpu`` with a backend that compiles on the device, e.g. TensorRT's builder);
cross-compiling backends (IREE's cuda target) need none. ``ray.init`` is called only when the
driver is not connected yet (``address``: ``auto``, ``ray://…`` or None to start a local one).
"""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.build.executors.shipping import ShippedSpec
from rmbuild.errors import BackendUnavailable, UsageError

if TYPE_CHECKING:
    from artifact_store.remote import Remote
    from rmbuild.build.running import BuildResult
    from rmbuild.declare.spec import LoadedSpec

# Backends whose compiler runs on the device itself, so a task needs a GPU on its node.
BUILDS_ON_DEVICE = frozenset({"tensorrt"})


def task_resources(spec: LoadedSpec, target: str) -> dict[str, float]:
    """Ray resources of the task that builds ``target`` (see the module docstring)."""
    from rmbuild.planning.stages import plan

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
    from rmbuild.build.running import finished

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


def tasks_share_this_disk(ray: Any) -> tuple[bool, str]:
    """Whether every task runs on this machine (a one-node cluster that is the driver's own
    node), and if not, what the cluster is, for the refusal."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    try:
        from ray.util.client import ray as client

        if client.is_connected():  # ray://: the driver's side of the cluster is elsewhere
            return False, f"a cluster reached through Ray Client ({len(alive)} node(s))"
    except Exception:  # noqa: BLE001, S110 - no client support in this Ray: not a client
        pass
    if len(alive) != 1:
        return False, f"a cluster of {len(alive)} nodes"
    try:
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - cannot tell: assume the worst
        return False, "a one-node cluster that may not be this machine"
    if alive[0].get("NodeID") != here:
        return False, "a one-node cluster on another machine"
    return True, "this machine"


def _shared_index(url: str | None) -> str | None:
    """The driver's index for the tasks, if it is a server every node can reach; a SQLite
    file is the driver's own (a node uses its own store's)."""
    return url if url and not url.startswith("sqlite") else None


def _build_task(
    shipped: ShippedSpec,
    target: str,
    root: str | None,
    url: str | None,
    reporter: Any,
    rebuild: datetime | bool,
    readonly: bool,
    remote: Remote | None,
    retry_failed: bool,
) -> BuildResult:
    """One target, in a Ray task: the shipped spec, built into ``root`` (None: this node's own
    store); with a bundle, what was built is pushed so the driver can pull it."""
    from rmbuild.build.executors import shipping
    from rmbuild.build.target import build
    from rmbuild.storage import remotes
    from rmbuild.storage.store import open_store

    with tempfile.TemporaryDirectory(prefix="rmbuild-ray-task-") as tmp:
        spec = shipping.load(shipped, Path(tmp), remote)
        with open_store(root, url) as store:
            result = build(
                spec,
                target,
                store=store,
                reporter=reporter,
                rebuild=rebuild,
                readonly=readonly,
                remote=remote,
                retry_failed=retry_failed,
            )
            if shipped.bundle is not None and remote is not None:
                remotes.call(remote.push, store, [result.artifact.key])
    return result


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
    exception its task raised (:func:`rmbuild.build.batch.compile_targets` sorts them out)."""
    from rmbuild.build.executors import shipping

    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    shared, cluster = tasks_share_this_disk(ray)
    if not shared and remote is None:
        raise UsageError(
            f"--executor ray: {cluster} does not share this machine's disk, and no remote "
            "cache is set: each task would build into its own node's store, which this "
            "machine never sees (or fail to find the model.yaml)",
            hint="give --remote URL (or set RMBUILD_REMOTE / remote = in rmbuild.toml): the "
            "project travels through it and every task pushes what it built; or build here "
            "with -j N",
        )
    if not shared and readonly:
        raise UsageError(
            f"--executor ray with --cache-policy readonly on {cluster}: the tasks would build "
            "nothing, and sending them the project writes to the remote",
            hint="run the same compile without --executor ray: it pulls what the remote has",
        )
    shipped = shipping.ship(spec, None if shared else remote)
    task_root, task_url = (root, url) if shared else (None, _shared_index(url))
    task = ray.remote(_build_task)
    refs = [
        task.options(**task_resources(spec, name), max_retries=0).remote(
            shipped, name, task_root, task_url, reporter, rebuild, readonly, remote, retry_failed
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
    if not shared:
        outcomes = _bring_home(outcomes, root, url, remote)
    return outcomes


def _bring_home(
    outcomes: list[Any], root: str, url: str | None, remote: Remote
) -> list[BuildResult | BaseException]:
    """Each built target's artifact, pulled from the remote into this machine's store; the
    result then names this store's record. A pull that fails is that target's outcome."""
    from rmbuild.build.running import BuildResult
    from rmbuild.storage import remotes
    from rmbuild.storage.store import open_store

    home: list[BuildResult | BaseException] = []
    with open_store(root, url) as store:
        for outcome in outcomes:
            if not isinstance(outcome, BuildResult):
                home.append(outcome)
                continue
            try:
                record = remotes.call(remote.pull, store, outcome.artifact.key)
            except Exception as exc:  # noqa: BLE001 - that target's failure, like a task's
                home.append(exc)
                continue
            last = dataclasses.replace(outcome.stages[-1], record=record)
            home.append(dataclasses.replace(outcome, stages=[*outcome.stages[:-1], last]))
    return home
