"""``compile --executor ray``: targets as Ray tasks on a local 2-CPU Ray.

One compiler run per key: two targets share a key, a third has its own; the three tasks meet
at the key's lock in the store (on a cluster: the remote and the index). A cluster whose nodes
do not share this machine's disk is played by the same local Ray with the driver's verdict on
it monkeypatched: tasks then build into the "node's" store (``$RMBUILD_STORE`` of the Ray
workers, set when the local Ray starts) from a bundle sent through a ``file://`` remote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _spec(counter: Path) -> str:
    def target(name: str, level: int) -> list[str]:
        return [
            f"  {name}:",
            "    profile: fake-compile",
            "    flags:",
            f"      level: {level}",
            f"      counter: {json.dumps(str(counter))}",
        ]

    lines = ["name: tiny", "source:", "  path: model", "  format: hf", "targets:"]
    lines += target("a", 1) + target("b", 2) + target("a-again", 1)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def node_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of the Ray workers' own "node" (their ``$RMBUILD_STORE``)."""
    return tmp_path_factory.mktemp("ray-node") / "store"


@pytest.fixture(scope="module")
def local_ray(node_store: Path):  # noqa: ANN201
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    with pytest.MonkeyPatch.context() as mp:
        # Token auth is on by default in Ray 2.60; a throwaway local cluster needs none.
        mp.setenv("RAY_AUTH_MODE", "disabled")
        # The workers keep the environment of this start: their store when a task is told to
        # use its node's own.
        mp.setenv("RMBUILD_STORE", str(node_store))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver judges the cluster to be other machines (as for a multi-node cluster)."""
    from rmbuild.build.executors import ray as ray_executor

    monkeypatch.setattr(
        ray_executor, "tasks_share_this_disk", lambda ray: (False, "a cluster of 3 nodes")
    )


def test_two_targets_as_ray_tasks_one_compiler_run_per_key(
    local_ray, project, tmp_path: Path
) -> None:
    from artifact_store import Store
    from rmbuild.build import compile_spec

    counter = tmp_path / "count.txt"
    project.write_spec(_spec(counter))
    with Store(project.store) as store:
        results = compile_spec(project.spec, None, store=store, executor="ray")
        assert [r.target for r in results] == ["a", "b", "a-again"]
        assert results[0].artifact.key == results[2].artifact.key
        assert results[0].artifact.key != results[1].artifact.key
        # Three tasks, two keys: each compiler ran once (the third task met the key's lock).
        assert counter.read_text().count("\n") == 2
        assert {u for r in store.list() for u in r.uses} == {
            ("tiny", "a"),
            ("tiny", "b"),
            ("tiny", "a-again"),
        }


def test_cli_executor_ray_builds_then_hits(local_ray, cli, project, tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    project.write_spec(_spec(counter))
    first = cli("compile", str(project.spec), "--all", "--executor", "ray", "--json")
    assert first.code == 0, first.err
    assert counter.read_text().count("\n") == 2
    again = cli("compile", str(project.spec), "--all", "--executor", "ray", "--json")
    assert again.code == 0, again.err
    assert all(r["hit"] for r in again.json())
    assert counter.read_text().count("\n") == 2


def test_a_failing_task_keeps_its_exit_code(local_ray, cli, project) -> None:
    project.set_flags(mode="fail")
    result = cli("compile", str(project.spec), "--executor", "ray")
    result.assert_failure(4)
    assert "fake-compiler" in result.err


def test_no_retry_failed_reaches_the_ray_tasks(local_ray, cli, project, tmp_path: Path) -> None:
    # A flag the local path honours must not be dropped on the way to a Ray task.
    counter = tmp_path / "runs.txt"
    project.set_flags(mode="fail", counter=str(counter))
    cli("compile", str(project.spec), "--executor", "ray").assert_failure(4)
    skipped = cli("compile", str(project.spec), "--executor", "ray", "--no-retry-failed")
    skipped.assert_failure(4)
    assert counter.read_text().count("\n") == 1, "the tool must not run again"
    assert "--no-retry-failed" in skipped.err


def test_without_ray_installed_the_executor_is_refused_with_the_extra(
    project, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    r = cli("compile", str(project.spec), "--executor", "ray")
    r.assert_failure(7)
    assert "--executor ray needs Ray, which is not installed" in r.err
    assert "rmbuild[ray]" in r.err


def test_a_cluster_of_other_machines_needs_a_remote(
    local_ray, cli, project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "count.txt"
    project.write_spec(_spec(counter))
    here = local_ray.nodes()[0]
    other = {**here, "NodeID": "f" * 56, "NodeManagerAddress": "10.0.0.2"}
    monkeypatch.setattr(local_ray, "nodes", lambda: [here, other])
    r = cli("compile", str(project.spec), "--all", "--executor", "ray")
    r.assert_failure(2)
    assert "a cluster of 2 nodes does not share this machine's disk" in r.err
    assert "--remote URL" in r.err
    assert not counter.exists()  # refused before any task


def test_readonly_on_a_cluster_of_other_machines_is_refused(
    local_ray, elsewhere, cli, project, tmp_path: Path
) -> None:
    r = cli(
        "compile",
        str(project.spec),
        "--executor",
        "ray",
        "--remote",
        f"file://{tmp_path / 'shared'}",
        "--cache-policy",
        "readonly",
    )
    r.assert_failure(2)
    assert "readonly" in r.err and "without --executor ray" in r.err


def test_on_other_machines_tasks_build_from_the_bundle_and_the_driver_pulls(
    local_ray, elsewhere, project, node_store: Path, tmp_path: Path
) -> None:
    from artifact_store import Store
    from artifact_store.remote import Remote
    from rmbuild.build import compile_spec
    from rmbuild.build.executors.shipping import BUNDLE_TARGET

    counter = tmp_path / "count.txt"
    project.write_spec(_spec(counter))
    remote = Remote(f"file://{tmp_path / 'shared'}")
    with Store(project.store) as store:
        results = compile_spec(project.spec, None, store=store, executor="ray", remote=remote)
        assert [r.target for r in results] == ["a", "b", "a-again"]
        assert counter.read_text().count("\n") == 2  # one compiler run per key, on the "node"
        for r in results:  # pulled into this machine's store, and named from it
            assert store.get(r.artifact.key) is not None
            assert Path(r.artifact.metadata["spec_file"]) == project.spec
    with Store(node_store) as node:
        assert {r.artifact.key for r in results} <= {rec.key for rec in node.list()}
    on_remote = {e.target for e in remote.list()}
    assert {"a", "b", BUNDLE_TARGET} <= on_remote


def test_a_task_on_another_machine_needs_nothing_of_the_drivers_disk(
    project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task function itself, in this process: the project folder is gone by the time it
    runs, and it builds the same key the driver's machine builds."""
    import shutil

    from artifact_store import Store
    from artifact_store.remote import Remote
    from rmbuild.build import compile_spec
    from rmbuild.build.executors import ray as ray_executor
    from rmbuild.build.executors import shipping
    from rmbuild.declare.spec import load_model_spec

    counter = tmp_path / "count.txt"
    project.write_spec(_spec(counter))
    with Store(project.store) as store:
        here = compile_spec(project.spec, ["b"], store=store)[0].artifact.key
    remote = Remote(f"file://{tmp_path / 'shared'}")
    shipped = shipping.ship(load_model_spec(project.spec), remote)
    assert shipped.bundle is not None
    shutil.rmtree(project.root)  # model.yaml, model/, profiles/, templates/: all gone
    monkeypatch.setenv("RMBUILD_STORE", str(tmp_path / "node-store"))
    result = ray_executor._build_task(shipped, "b", None, None, None, False, False, remote, True)
    assert result.artifact.key == here  # keys hold content, not paths
    assert counter.read_text().count("\n") == 2  # built there, not found
    assert remote.get(here) is not None  # pushed, for the driver to pull


def test_a_task_on_this_machine_refuses_a_model_yaml_changed_since_it_was_read(
    project, tmp_path: Path
) -> None:
    from rmbuild.build.executors import ray as ray_executor
    from rmbuild.build.executors import shipping
    from rmbuild.declare.spec import load_model_spec
    from rmbuild.errors import SpecError

    project.write_spec(_spec(tmp_path / "count.txt"))
    shipped = shipping.ship(load_model_spec(project.spec), None)
    project.write_spec(_spec(tmp_path / "other.txt"))
    with pytest.raises(SpecError, match="changed after `rmbuild compile` read it"):
        ray_executor._build_task(
            shipped, "a", str(project.store), None, None, False, False, None, True
        )
    assert not (tmp_path / "count.txt").exists() and not (tmp_path / "other.txt").exists()
