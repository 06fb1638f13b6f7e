"""What every bundle shares: serve.sh passes each argument literally, a bundle is whole or
absent, versions.json pins every file by digest, the context limit read from the files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmbuild.errors import EngineRefused, InternalError
from rmbuild.handoff import engine_module
from rmbuild.handoff.artifact import Artifact
from rmbuild.handoff.bundle import Command, Link, Plan, Rel, write


def _artifact(
    tmp_path: Path,
    files: dict[str, str],
    backend: str = "onnxruntime",
    **md,  # noqa: ANN003
) -> Artifact:
    tree = tmp_path / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (tree / rel).write_text(text)
    record = SimpleNamespace(
        key="ef" * 32,
        model="m",
        target="t",
        backend=backend,
        manifest_digest="0" * 64,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        metadata=md,
    )
    store = SimpleNamespace(get=lambda _key: None, root=tmp_path)
    return Artifact(record, tree, dict.fromkeys(files, "x"), store)  # type: ignore[arg-type]


def _plan(art: Artifact, command: Command, files: dict) -> Plan:
    return Plan(
        engine="test",
        title="Test",
        name="m",
        artifacts=[art],
        files=files,
        command=command,
        limits={},
        serving={},
        readme=[],
        hardware="",
    )


def test_serve_sh_passes_every_argument_literally(tmp_path: Path) -> None:
    art = _artifact(tmp_path, {"config.json": "{}"})
    hostile = "x; rm -rf ~ $(id) `id` 'q' \"d\""
    command = Command(["printf", "%s\\n", hostile, Rel("model dir/file"), "--flag"])
    write(_plan(art, command, {"model dir/file": "data"}), tmp_path / "b", lambda _root: [])
    out = subprocess.run(
        [str(tmp_path / "b" / "serve.sh"), "extra arg"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.splitlines()
    assert out == [hostile, str(tmp_path / "b" / "model dir" / "file"), "--flag", "extra arg"]


def test_a_failing_check_leaves_nothing_behind(tmp_path: Path) -> None:
    art = _artifact(tmp_path, {"config.json": "{}"})

    def check(root: Path) -> list[str]:
        assert (root / "f").read_text() == "data"  # the check sees the written folder
        raise InternalError("the engine's validator refused it")

    with pytest.raises(InternalError):
        write(_plan(art, Command(["true"]), {"f": "data"}), tmp_path / "b", check)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]  # no bundle, no staging


def test_versions_json_pins_every_file_and_links_stay_links(tmp_path: Path) -> None:
    art = _artifact(tmp_path, {"config.json": '{"model_type": "llama"}'})
    plan = _plan(art, Command(["true"]), {"m/config.json": Link(art.tree / "config.json")})
    checked = write(plan, tmp_path / "b", lambda _root: ["looked at it"])
    root = tmp_path / "b"
    versions = json.loads((root / "versions.json").read_text())
    for rel, digest in versions["files"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    assert set(versions["files"]) == {"m/config.json", "serve.sh"}
    assert versions["checked"] == checked == ["looked at it"]
    assert versions["artifacts"][0]["id"] == art.key
    assert os.stat(root / "m/config.json").st_ino == os.stat(art.tree / "config.json").st_ino
    assert "looked at it" in (root / "README.md").read_text()


def test_refused_and_unknown_engines() -> None:
    with pytest.raises(EngineRefused, match="archived upstream") as refused:
        engine_module("torchserve")
    assert refused.value.exit_code == 2 and "--to ray-serve" in (refused.value.hint or "")
    with pytest.raises(EngineRefused, match="did you mean 'vllm-rbln'"):
        engine_module("vllm_rbln")
    for name in ("triton", "vllm", "vllm-rbln", "furiosa-llm", "ray-serve"):
        module = engine_module(name)
        assert module.ENGINE == name and callable(module.plan) and callable(module.check)
