"""``rmbuild export REF --to ENGINE DIR``: the command's refusals and exit codes, its output,
and a bundle written whole or not at all. Uses the stand-in compiler's artifact (fast); the
bundles of real artifacts are in tests/handoff/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project


@pytest.fixture
def built(project: Project, cli) -> str:  # noqa: ANN001
    result = cli("compile", str(project.spec), "--tag", "chat-main", "--json")
    assert result.code == 0, result.err
    return result.json()[0]["artifact"]


def test_export_is_a_listed_command(cli) -> None:  # noqa: ANN001
    result = cli("--help")
    assert result.code == 0
    assert "export" in result.out and "serving engine" in result.out


def test_torchserve_is_refused_with_the_reason_and_what_to_use(cli, tmp_path: Path) -> None:  # noqa: ANN001
    result = cli("export", "anything", "--to", "torchserve", str(tmp_path / "out"))
    result.assert_failure(2)
    assert "archived upstream" in result.err
    assert "--to ray-serve" in result.err and "--to triton" in result.err
    assert not (tmp_path / "out").exists()
    as_json = cli("export", "anything", "--to", "torchserve", str(tmp_path / "o"), "--json")
    assert as_json.code == 2
    assert as_json.json()["error"] == "engine-refused"


def test_an_unknown_engine_gets_the_closest_name(cli, tmp_path: Path) -> None:  # noqa: ANN001
    result = cli("export", "x", "--to", "trition", str(tmp_path / "out"))
    result.assert_failure(2)
    assert "did you mean 'triton'" in result.err
    assert "vllm-rbln" in result.err  # the engines are listed


def test_an_unknown_artifact_is_exit_5(cli, project: Project, tmp_path: Path) -> None:  # noqa: ANN001
    result = cli("export", "tiny:nothere", "--to", "vllm", str(tmp_path / "out"))
    result.assert_failure(5)
    assert not (tmp_path / "out").exists()


def test_a_non_empty_destination_is_refused_and_left_alone(cli, built: str, tmp_path: Path) -> None:  # noqa: ANN001
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    result = cli("export", built, "--to", "vllm", str(busy))
    result.assert_failure(2)
    assert "not an empty folder" in result.err
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]


def test_vllm_bundle_of_the_source_with_json_output(
    cli, built: str, project: Project, tmp_path: Path
) -> None:  # noqa: ANN001
    out = tmp_path / "bundle"
    out.mkdir()  # an empty folder is used
    result = cli("export", "chat-main", "--to", "vllm", str(out), "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["engine"] == "vllm" and doc["artifacts"] == [built] and doc["dir"] == str(out)
    assert doc["command"].startswith("vllm serve ./model --served-model-name tiny")
    for rel in ("config.json", "weights.bin"):
        assert (out / "model" / rel).read_bytes() == (project.model / rel).read_bytes()
    versions = json.loads((out / "versions.json").read_text())
    assert (
        versions["serving"]["source_digest"]
        == json.loads((out / "source.json").read_text())["source_digest"]
    )
    assert (out / "serve.sh").stat().st_mode & 0o100
    human = cli("export", "tiny:fake", "--to", "vllm", str(tmp_path / "b2"), "--name", "chat")
    assert human.code == 0, human.err
    assert f"tiny:fake {built[:12]} -> {tmp_path / 'b2'}" in human.out
    assert "--served-model-name chat" in human.out


def test_a_changed_source_folder_is_refused(
    cli, built: str, project: Project, tmp_path: Path
) -> None:  # noqa: ANN001
    (project.model / "weights.bin").write_bytes(b"other weights")
    result = cli("export", built, "--to", "vllm", str(tmp_path / "out"))
    result.assert_failure(6)
    assert "is not what artifact" in result.err and "rmbuild compile" in result.err
    assert not (tmp_path / "out").exists()


def test_an_engine_that_cannot_load_the_artifact_says_which_can(
    cli, built: str, tmp_path: Path
) -> None:  # noqa: ANN001
    # The stand-in's artifact is onnxruntime-backed but holds no model.onnx.
    for engine, why in (
        ("triton", "Triton runs ONNX Runtime, OpenVINO and TensorRT graphs"),
        ("vllm-rbln", "optimum-rbln compiled folder"),
        ("furiosa-llm", "RNGD .fxb"),
    ):
        result = cli("export", built, "--to", engine, str(tmp_path / engine))
        result.assert_failure(2)
        assert why in result.err or "onnxruntime artifact" in result.err, result.err
        assert "--to" in result.err  # the hint names engines that take it
        assert not (tmp_path / engine).exists()


def test_several_artifacts_only_for_triton(cli, built: str, tmp_path: Path) -> None:  # noqa: ANN001
    result = cli("export", built, "chat-main", "--to", "vllm", str(tmp_path / "out"))
    result.assert_failure(2)
    assert "takes one artifact, not 2" in result.err


def test_a_max_model_len_past_the_model_is_refused(
    cli, built: str, project: Project, tmp_path: Path
) -> None:  # noqa: ANN001
    project.model.joinpath("config.json").write_text(
        json.dumps({"model_type": "gpt2", "n_positions": 64})
    )
    # (the source changed: rebuild so the artifact matches it)
    assert cli("compile", str(project.spec)).code == 0
    result = cli(
        "export", "tiny:fake", "--to", "vllm", str(tmp_path / "o"), "--max-model-len", "65"
    )
    result.assert_failure(6)
    assert "64" in result.err
    ok = cli("export", "tiny:fake", "--to", "vllm", str(tmp_path / "ok"), "--max-model-len", "32")
    assert ok.code == 0, ok.err
    assert "--max-model-len 32" in (tmp_path / "ok" / "serve.sh").read_text()


def test_a_damaged_artifact_is_refused_and_nothing_exported(
    cli, built: str, project: Project, tmp_path: Path
) -> None:  # noqa: ANN001
    from artifact_store import Store

    with Store(project.store) as store:
        manifest = store.get_manifest(store.get(built).manifest_digest)
        blob = store.blob_path(manifest.files["model.bin"].digest)
    blob.chmod(0o644)
    blob.write_bytes(b"flipped")
    result = cli("export", built, "--to", "vllm", str(tmp_path / "out"))
    result.assert_failure(6)
    assert "corrupt" in result.err and "verify --repair" in result.err
    assert not (tmp_path / "out").exists()
