"""examples/ci: the CI-to-serving recipe, its steps run as written.

The build job's ``run:`` steps of ``prebuild.yml`` that call rmbuild run in bash exactly as
GitHub runs them (the workflow's shell, ``${{ matrix.target }}`` filled in, its ``env:``), on a
CI host's store; then ``serve.sh`` runs on a serving host's empty store. The remote is a
``file://`` folder standing in for the workflow's S3 bucket (same code path but the protocol).
Once with the stand-in compiler's project (milliseconds; its artifact is no real model, so the
final ``run`` is refused as unloadable), once with the real tiny-llama example, where the
serving host generates text.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import Project

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "examples" / "ci"
# What GitHub runs a step with when the workflow says `shell: bash`.
GITHUB_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]


def _workflow() -> dict:
    return yaml.safe_load((CI / "prebuild.yml").read_text(encoding="utf-8"))


def _build_steps(target: str) -> list[str]:
    """The build job's rmbuild steps, in order, for one matrix target."""
    steps = _workflow()["jobs"]["build"]["steps"]
    scripts = [s["run"] for s in steps if "rmbuild " in s.get("run", "")]
    filled = [s.replace("${{ matrix.target }}", target) for s in scripts]
    for script in filled:
        assert "${{" not in script, f"a step needs more than this test fills in: {script}"
    return filled


def _env(store: Path, remote: str, model: Path) -> dict[str, str]:
    env = {**os.environ, **{k: str(v) for k, v in _workflow()["env"].items()}}
    env.update(
        RMBUILD_REMOTE=remote,  # the workflow's s3:// bucket, on this machine
        MODEL=str(model),
        RMBUILD_STORE=str(store),
        # `rmbuild` as the workflow's `pip install` puts it on PATH.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def _ci_job(target: str, env: dict[str, str], cwd: Path) -> list[subprocess.CompletedProcess]:
    done = []
    for script in _build_steps(target):
        step = subprocess.run(  # noqa: S603 - the recipe's own steps, as GitHub runs them
            [*GITHUB_BASH, script], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
        )
        assert step.returncode == 0, (script, step.stdout, step.stderr)
        done.append(step)
    return done


def _serve(alias: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - the recipe's script, run as its comment says
        ["bash", str(CI / "serve.sh"), alias],
        env={**env, "MAX_TOKENS": "8"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_workflow_runs_its_steps_with_pipefail() -> None:
    # Without it `compile ... | tee result.json` passes whatever compile exited with.
    assert _workflow()["defaults"]["run"]["shell"] == "bash"
    assert any("| tee" in s for s in _build_steps("cpu"))


def _check_recipe(
    model: Path, model_name: str, target: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess, str]:
    """Run the CI job, then the serving host; returns serve.sh's result and the artifact."""
    remote = f"file://{tmp_path / 'team-cache'}"
    ci = tmp_path / "ci-host"
    ci.mkdir()
    env = _env(tmp_path / "ci-store", remote, model)
    compiled, pushed, listed = _ci_job(target, env, ci)
    result = json.loads((ci / "result.json").read_text())
    artifact = result[0]["artifact"]
    alias = f"tiny-llama-{target}"
    assert f"alias {alias} -> {artifact[:12]}" in pushed.stdout, pushed.stdout
    assert artifact[:12] in listed.stdout
    entry = json.loads((tmp_path / "team-cache" / "entries" / f"{artifact}.json").read_bytes())
    assert entry["aliases"] == [alias]
    # Another CI job for the same target, on a fresh runner: the remote serves it, no tool runs.
    again = tmp_path / "ci-host-2"
    again.mkdir()
    _ci_job(target, _env(tmp_path / "ci-store-2", remote, model), again)
    second = json.loads((again / "result.json").read_text())
    assert second[0]["artifact"] == artifact and second[0]["hit"]
    # The serving host: an empty store, the same remote.
    host = tmp_path / "serving-host"
    host.mkdir()
    served = _serve(alias, _env(tmp_path / "serve-store", remote, model), host)
    assert f"{alias} -> {artifact}  (pulled: {model_name}:{target})" in served.stdout, served
    assert f"{artifact[:12]}  ok" in served.stdout, served  # verify found it, by the alias
    assert "artifact-not-found" not in served.stderr, served.stderr
    return served, artifact


def test_the_recipe_end_to_end_with_the_stand_in_compiler(project: Project, tmp_path: Path) -> None:
    served, _ = _check_recipe(project.spec, "tiny", "fake", tmp_path)
    # `run` got the pulled artifact; the stand-in's bytes are no model (6), or this venv has
    # no onnxruntime (7). Never "not found" (5), never an internal error (1).
    assert served.returncode in (6, 7), (served.stdout, served.stderr)
    assert ("artifact-unloadable" if served.returncode == 6 else "onnxruntime") in served.stderr


@pytest.mark.slow
def test_the_recipe_end_to_end_with_the_tiny_llama_example(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum.exporters.onnx")
    model = REPO / "examples" / "tiny-llama" / "model.yaml"
    served, artifact = _check_recipe(model, "tiny-llama", "cpu", tmp_path)
    assert served.returncode == 0, (served.stdout, served.stderr)
    text = served.stdout.split(f"{artifact[:12]}  ok", 1)[1]
    assert re.search(r"\w", text), served.stdout  # the serving host generated text
