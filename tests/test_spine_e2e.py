"""The whole loop on the real toolchain: model.yaml -> export -> optimize -> store -> ls/show/run.

Runs optimum-cli and ONNX Runtime for real on the example tiny Llama (a few seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny-llama"
PROMPT = "The future of AI is"


def rmbuild(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a user would (a separate process)."""
    exe = Path(sys.executable).parent / "rmbuild"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("spine")
    return {
        **os.environ,
        "RMBUILD_STORE": str(root / "store"),
        "RMBUILD_CONFIG_DIR": str(root / "config"),
    }


@pytest.fixture(scope="module")
def reference_text() -> str:
    """Greedy continuation from PyTorch, the reference every backend must match."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(EXAMPLE / "model")
    model = AutoModelForCausalLM.from_pretrained(EXAMPLE / "model")
    ids = tok(PROMPT, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=32, do_sample=False, min_new_tokens=32)
    return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def built(env: dict[str, str]) -> dict:
    result = rmbuild("compile", str(EXAMPLE / "model.yaml"), "--target", "cpu", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_first_compile_runs_both_stages(built: dict) -> None:
    assert [s["profile"] for s in built["stages"]] == ["onnx-export", "onnxruntime-cpu"]
    assert not built["hit"]
    assert all(not s["hit"] for s in built["stages"])


def test_second_compile_is_a_hit_and_says_so(built: dict, env: dict[str, str]) -> None:
    again = rmbuild("compile", str(EXAMPLE / "model.yaml"), "--target", "cpu", env=env)
    assert again.returncode == 0, again.stderr
    assert "cached, no tool ran" in again.stdout
    assert built["artifact"] in again.stdout
    assert again.stderr.count("cache hit") == 2


def test_ls_lists_both_stages(built: dict, env: dict[str, str]) -> None:
    rows = json.loads(rmbuild("ls", "--json", env=env).stdout)
    by_id = {r["id"]: r for r in rows}
    final = by_id[built["artifact"]]
    assert final["model"] == "tiny-llama" and final["target"] == "cpu"
    assert final["backend"] == "onnxruntime" and final["profile"] == "onnxruntime-cpu"
    assert final["toolchain"]["onnxruntime"]
    assert final["size"] > 0
    table = rmbuild("ls", env=env).stdout
    assert built["artifact"][:12] in table and "tiny-llama" in table


def test_show_has_provenance(built: dict, env: dict[str, str]) -> None:
    info = json.loads(rmbuild("show", built["artifact"][:8], "--json", env=env).stdout)
    assert info["id"] == built["artifact"]
    assert "--level" in info["argv"] and "extended" in info["argv"]
    assert info["parents"] == [built["stages"][0]["key"]]
    assert info["action_key"]["argv"][0] == "<python>"  # paths replaced by role names
    assert "model.onnx" in info["files"] and "tokenizer.json" in info["files"]
    assert Path(info["log"]).is_file()
    assert "onnxruntime" in Path(info["log"]).read_text()
    assert info["durations"]["tool_s"] > 0
    human = rmbuild("show", built["artifact"][:8], env=env)
    assert human.returncode == 0 and "fingerprint" in human.stdout


def test_run_streams_the_reference_text(
    built: dict, env: dict[str, str], reference_text: str
) -> None:
    result = rmbuild(
        "run",
        "--artifact",
        built["artifact"][:10],
        "--prompt",
        PROMPT,
        "--max-tokens",
        "32",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == PROMPT + reference_text
    assert "32 tokens" in result.stderr


def test_alias_and_python_api(
    built: dict, env: dict[str, str], reference_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rmbuild("tag", built["artifact"][:12], "chat-main-cpu", env=env).returncode == 0
    monkeypatch.setenv("RMBUILD_STORE", env["RMBUILD_STORE"])
    import rmbuild as api

    with api.load("chat-main-cpu") as session:
        assert session.generate(PROMPT, max_tokens=32) == reference_text
        assert session.last_stats.new_tokens == 32
        sampled = session.generate(PROMPT, max_tokens=16, temperature=0.8, top_p=0.9, seed=1)
        assert sampled == session.generate(
            PROMPT, max_tokens=16, temperature=0.8, top_p=0.9, seed=1
        )


def test_plain_export_target_runs_too(env: dict[str, str], reference_text: str) -> None:
    out = rmbuild("compile", str(EXAMPLE / "model.yaml"), "--target", "onnx", "--json", env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)[0]
    assert result["hit"]  # shares the export stage with the cpu target
    listed = json.loads(rmbuild("ls", "--target", "onnx", "--json", env=env).stdout)
    assert [r["id"] for r in listed] == [result["artifact"]]
    assert {u["target"] for u in listed[0]["uses"]} == {"cpu", "onnx"}
    run = rmbuild("run", "-a", result["artifact"], "--json", env=env)
    assert json.loads(run.stdout)["text"] == reference_text


def test_changed_model_files_rebuild(tmp_path: Path, built: dict, env: dict[str, str]) -> None:
    project = tmp_path / "copy"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.py", "corpus.txt"))
    # Same names, different content: must not share an artifact (ONNX Runtime #6455).
    config = json.loads((project / "model" / "config.json").read_text())
    config["rms_norm_eps"] = config.get("rms_norm_eps", 1e-6) * 2
    (project / "model" / "config.json").write_text(json.dumps(config))
    out = rmbuild("compile", str(project / "model.yaml"), "-t", "cpu", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["artifact"] != built["artifact"]


def test_info_backends_profiles_schema(env: dict[str, str]) -> None:
    info = json.loads(rmbuild("info", "--json", env=env).stdout)
    assert info["cpu"]["cores"] >= 1
    assert any(t["name"] == "onnxruntime" for t in info["toolchains"])
    backends = {b["name"]: b for b in json.loads(rmbuild("backends", "--json", env=env).stdout)}
    assert backends["onnxruntime"]["available"]
    profiles = {p["name"] for p in json.loads(rmbuild("profiles", "--json", env=env).stdout)}
    assert {"onnx-export", "onnxruntime-cpu"} <= profiles
    schema = json.loads(rmbuild("schema", env=env).stdout)
    assert "targets" in schema["properties"]


def test_an_onnx_folder_source_skips_the_export(
    tmp_path: Path, built: dict, env: dict[str, str], reference_text: str
) -> None:
    # Users who export themselves give rmbuild the ONNX folder; the export stage is skipped.
    export_id = built["stages"][0]["key"]
    info = json.loads(rmbuild("show", export_id, "--json", env=env).stdout)
    store_root = Path(env["RMBUILD_STORE"])
    onnx_dir = tmp_path / "exported"
    onnx_dir.mkdir()
    for rel, entry in info["files"].items():
        digest = entry["digest"]
        shutil.copyfile(store_root / "objects" / digest[:2] / digest[2:], onnx_dir / rel)
    spec = tmp_path / "model.yaml"
    spec.write_text(
        "name: tiny-llama-onnx\nsource: {path: exported, format: onnx}\n"
        "targets:\n  cpu: {profile: onnxruntime-cpu}\n"
    )
    out = rmbuild("compile", str(spec), "--json", env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)[0]
    assert [s["profile"] for s in result["stages"]] == ["onnxruntime-cpu"]
    run = rmbuild("run", "-a", result["artifact"], "--json", env=env)
    assert json.loads(run.stdout)["text"] == reference_text
