"""The VN-series plugin's own tests: rmbuild's backend contract kit, and the C runtime's tokens
against the NumPy reference (tests/reference.py).

They need the SDK installed next to rmbuild (``python sdk/build_sdk.py --prefix
"$VIRTUAL_ENV"``: vnpuc in bin/, libvnpu.so in lib/) and skip, saying so, without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rmbuild.testing import BackendContract
from rmbuild.testing.pytest_suite import BackendContractTests

from reference import Reference

HERE = Path(__file__).resolve().parent
MODEL_YAML = HERE.parent / "model.yaml"
MODEL = (HERE.parent / ".." / "tiny-llama" / "model").resolve()
PROMPT = "The future of AI is"
STEPS = 32

if shutil.which("vnpuc", path=str(Path(sys.executable).parent)) is None:
    pytest.skip(
        "the VN SDK is not installed in this environment: python sdk/build_sdk.py --prefix "
        f"{sys.prefix}",
        allow_module_level=True,
    )


def reference_tokens(max_tokens: int = STEPS, eos: frozenset[int] = frozenset()) -> list[int]:
    from rmbuild.runtime.tokenizer import Tokenizer

    ids = Tokenizer(MODEL).encode(PROMPT)
    return Reference(MODEL).greedy(ids, max_tokens, set(eos))


def eos_ids() -> frozenset[int]:
    value = json.loads((MODEL / "generation_config.json").read_text()).get("eos_token_id")
    return frozenset(value if isinstance(value, list) else [value])


def on_another_sku(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata of the same artifact compiled for a VN-2, which this host does not have."""
    metadata["fingerprint"]["sku"] = "VN-2"
    return metadata


class TestVnpuContract(BackendContractTests):
    contract = BackendContract(
        backend="vnpu",
        model_yaml=MODEL_YAML,
        target="npu",
        prompt=PROMPT,
        max_tokens=STEPS,
        incompatible=on_another_sku,
        reference_tokens=reference_tokens(),
        bad_options={"device": "vnpu7"},
    )


def _rmbuild(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    rmbuild = Path(sys.executable).parent / "rmbuild"
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(rmbuild), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("vnpu-cli")
    return {"RMBUILD_STORE": str(root / "store"), "RMBUILD_CONFIG_DIR": str(root / "config")}


def test_compile_and_run_through_the_cli_give_the_reference_text(cli_store) -> None:  # noqa: ANN001
    from rmbuild.runtime.tokenizer import Tokenizer

    built = _rmbuild(
        "compile", str(MODEL_YAML), "--target", "npu", "--tag", "vnpu-demo", env=cli_store
    )
    assert built.returncode == 0, built.stderr
    ran = _rmbuild(
        "run", "-a", "vnpu-demo", "-p", PROMPT, "-n", str(STEPS), "--json", env=cli_store
    )
    assert ran.returncode == 0, ran.stderr
    expected = Tokenizer(MODEL).decode(reference_tokens(STEPS, eos_ids()))
    assert json.loads(ran.stdout)["text"] == expected
    shown = json.loads(_rmbuild("show", "vnpu-demo", "--json", env=cli_store).stdout)
    assert shown["details"]["sku"] == "VN-1" and shown["details"]["max_seq"] == 256
    assert shown["fingerprint"] == {"sku": "VN-1"}


def test_an_artifact_for_an_absent_sku_is_refused_with_exit_6(cli_store) -> None:  # noqa: ANN001
    _rmbuild("compile", str(MODEL_YAML), "--target", "npu", "--tag", "vnpu-demo", env=cli_store)
    ran = _rmbuild("run", "-a", "vnpu-demo", env={**cli_store, "VNPU_DEVICES": "VN-2"})
    assert ran.returncode == 6, ran.stderr
    assert "compiled for a VN-1" in ran.stderr and "VN-2" in ran.stderr


def test_a_model_vnpuc_cannot_compile_is_exit_4_with_its_reason(cli_store, tmp_path: Path) -> None:  # noqa: ANN001
    model = tmp_path / "gpt2"
    shutil.copytree(MODEL, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    spec = tmp_path / "model.yaml"
    spec.write_text(
        f"name: g\nsource: {{path: {model}}}\ntargets:\n  npu: {{profile: vnpu-compile}}\n"
    )
    built = _rmbuild("compile", str(spec), "--target", "npu", env=cli_store)
    assert built.returncode == 4, built.stderr
    assert "model_type 'gpt2' is not supported" in built.stderr


def test_the_plugin_command_lists_the_devices(cli_store) -> None:  # noqa: ANN001
    listed = _rmbuild("vnpu-smi", "--json", env={**cli_store, "VNPU_DEVICES": "VN-1,VN-2"})
    assert listed.returncode == 0, listed.stderr
    assert [d["sku"] for d in json.loads(listed.stdout)["devices"]] == ["VN-1", "VN-2"]
