"""bench/bench_furiosa.py checks that its cold build is cold instead of assuming it: a store
that holds the target's stage or a furiosa compiler cache is refused before the build, and the
compiler-cache files a build was fed are read back from its record. No furiosa toolchain
needed: these are the checks, not the 160 s build."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from artifact_store import Store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench():  # noqa: ANN201 - the bench module
    spec = importlib.util.spec_from_file_location(
        "bench_furiosa", REPO / "bench" / "bench_furiosa.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def setup(tmp_path: Path, bench):  # noqa: ANN001, ANN201
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "model").mkdir()
    (project / "model" / "config.json").write_text("{}")
    spec = project / "model.yaml"
    spec.write_text(bench.SPEC.format(model="model"))
    env = {**os.environ, "RMBUILD_STORE": str(tmp_path / "store")}
    return spec, env


def _commit(root: str, tmp_path: Path, key: str, target: str, metadata: dict) -> None:
    files = tmp_path / f"files-{key[:4]}"
    files.mkdir()
    (files / "cache.bin").write_bytes(b"kernels")
    with Store(root) as store:
        manifest = store.put_tree(files)
        store.commit(
            key, manifest, model="tiny-llama", target=target, backend="furiosa", metadata=metadata
        )


def test_an_empty_store_is_cold(bench, setup) -> None:  # noqa: ANN001
    spec, env = setup
    bench._refuse_unless_cold(spec, env)  # no exit


def test_a_store_with_a_furiosa_compiler_cache_is_refused(bench, setup, tmp_path: Path) -> None:  # noqa: ANN001
    spec, env = setup
    _commit(env["RMBUILD_STORE"], tmp_path, "ab" * 32, "compiler-cache", {})
    with pytest.raises(SystemExit) as caught:
        bench._refuse_unless_cold(spec, env)
    assert "not a cold build" in str(caught.value)
    assert "furiosa compiler cache abababababab" in str(caught.value)


def test_a_store_holding_the_stage_is_refused(bench, setup, monkeypatch) -> None:  # noqa: ANN001
    spec, env = setup
    plan = {"targets": [{"stages": [{"profile": "furiosa-rngd", "local": "hit"}]}]}
    answers = {"--plan": json.dumps(plan), "ls": "[]"}

    def fake_timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
        return 0.0, answers["--plan" if "--plan" in argv else "ls"]

    monkeypatch.setattr(bench, "_timed", fake_timed)
    with pytest.raises(SystemExit, match=r"stages furiosa-rngd \(hit\)"):
        bench._refuse_unless_cold(spec, env)


def test_the_files_a_build_was_fed_come_from_its_record(bench, setup, tmp_path: Path) -> None:  # noqa: ANN001
    _, env = setup
    key = "cd" * 32
    _commit(env["RMBUILD_STORE"], tmp_path, key, "rngd", {"compiler_cache": {"fed": {"fed": 3}}})
    assert bench._compiler_cache_fed(env["RMBUILD_STORE"], key) == 3
