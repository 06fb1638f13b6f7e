"""``compile --executor ray`` (issue 9): targets as Ray tasks on a local 2-CPU Ray.

One compiler run per key: two targets share a key, a third has its own; the three tasks meet
at the key's lock in the store (on a cluster: the remote and the index).
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
def local_ray():  # noqa: ANN201
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    with pytest.MonkeyPatch.context() as mp:
        # Token auth is on by default in Ray 2.60; a throwaway local cluster needs none.
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


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
