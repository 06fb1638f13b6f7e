"""The vendor NPU plugin (examples/vendor-npu-plugin), proven from outside the tree.

A fresh virtual environment gets rmbuild (this checkout, editable) and the example package
(built as a wheel by pip), the example's C "SDK" is built with gcc into it, and then, with that
environment's own ``rmbuild``: the backend, its profile and its command are listed with the
package they come from, ``compile --target npu`` builds with the plugin's profile, template and
toolchain, ``run`` generates through the C runtime the text of the NumPy reference (and of
PyTorch, where it is installed here), and the package's own tests pass, the contract kit among
them. Nothing under rmbuild/ knows the plugin.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "vendor-npu-plugin"
MODEL = REPO / "examples" / "tiny-llama" / "model"
PROMPT = "The future of AI is"
STEPS = 32


def test_nothing_in_rmbuild_knows_the_example_plugin() -> None:
    shipped = [REPO / "rmbuild", REPO / "profiles", REPO / "templates", REPO / "pyproject.toml"]
    pattern = re.compile(r"vnpu|vendor.npu|rmbuild_vendor", re.IGNORECASE)
    found = [
        str(path.relative_to(REPO))
        for root in shipped
        for path in ([root] if root.is_file() else sorted(root.rglob("*")))
        if path.is_file()
        and path.suffix not in (".pyc",)
        and pattern.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert found == []


def _reference_tokens() -> list[int]:
    spec = importlib.util.spec_from_file_location(
        "vnpu_reference", EXAMPLE / "tests" / "reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from rmbuild.runtime.tokenizer import Tokenizer

    ids = Tokenizer(MODEL).encode(PROMPT)
    eos = json.loads((MODEL / "generation_config.json").read_text())["eos_token_id"]
    return module.Reference(MODEL).greedy(ids, STEPS, set(eos if isinstance(eos, list) else [eos]))


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: the example's SDK is built from C sources")
    # The reference tokens are computed here too (NumPy, the model's tokenizer): the runtime
    # extras; CI's light venv (core + dev) skips instead of building a venv it cannot check.
    pytest.importorskip("numpy", reason="numpy is not installed (extra: onnx)")
    pytest.importorskip("tokenizers", reason="tokenizers is not installed (extra: onnx)")
    root = tmp_path_factory.mktemp("vendor-venv")
    venv = root / "venv"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    installed = subprocess.run(
        [*pip, "-e", str(REPO), str(EXAMPLE), "pytest"], capture_output=True, text=True
    )
    if installed.returncode != 0:
        tail = "\n".join(installed.stderr.splitlines()[-15:])
        pytest.fail(f"pip could not install rmbuild and the example:\n{tail}")
    install_s = time.monotonic() - t0
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            str(EXAMPLE / "sdk" / "build_sdk.py"),
            "--prefix",
            str(venv),
        ],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMBUILD_", "VNPU_", "PYTHON"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        RMBUILD_STORE=str(root / "store"),
        RMBUILD_CONFIG_DIR=str(root / "config"),
    )
    print(f"fresh venv: rmbuild + example installed in {install_s:.1f} s")
    return {"bin": venv / "bin", "env": env}


def _rmbuild(venv: dict[str, object], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(venv["bin"] / "rmbuild"), *args],  # type: ignore[operator]
        capture_output=True,
        text=True,
        env=venv["env"],  # type: ignore[arg-type]
        cwd=EXAMPLE,
    )


@pytest.mark.slow
def test_the_installed_plugin_is_listed_with_its_package(venv) -> None:  # noqa: ANN001
    backends = {r["name"]: r for r in json.loads(_rmbuild(venv, "backends", "--json").stdout)}
    assert backends["vnpu"]["available"] and backends["vnpu"]["package"] == "rmbuild-vendor-npu"
    assert backends["vnpu"]["versions"]["libvnpu"] == "1.2.0"
    profiles = {r["name"]: r for r in json.loads(_rmbuild(venv, "profiles", "--json").stdout)}
    assert profiles["vnpu-compile"]["package"] == "rmbuild-vendor-npu"
    assert profiles["vnpu-compile"]["origin"] == "plugin" and profiles["vnpu-compile"]["available"]
    assert "site-packages" in profiles["vnpu-compile"]["path"]  # the installed package's copy
    assert "vnpu-smi" in _rmbuild(venv, "--help").stdout
    listed = json.loads(_rmbuild(venv, "vnpu-smi", "--json").stdout)
    assert [d["sku"] for d in listed["devices"]] == ["VN-1"]


@pytest.mark.slow
def test_compile_and_run_through_the_c_runtime_give_the_reference_text(venv) -> None:  # noqa: ANN001
    built = _rmbuild(venv, "compile", "model.yaml", "--target", "npu", "--tag", "vnpu-demo")
    assert built.returncode == 0, built.stderr
    again = _rmbuild(venv, "compile", "model.yaml", "--target", "npu")
    assert again.returncode == 0 and "cache hit" in again.stdout + again.stderr
    ran = _rmbuild(venv, "run", "-a", "vnpu-demo", "-p", PROMPT, "-n", str(STEPS), "--json")
    assert ran.returncode == 0, ran.stderr
    from rmbuild.runtime.tokenizer import Tokenizer

    reference = _reference_tokens()
    result = json.loads(ran.stdout)
    assert result["text"] == Tokenizer(MODEL).decode(reference)
    assert result["new_tokens"] == len(reference) and result["max_model_len"] == 256
    shown = json.loads(_rmbuild(venv, "show", "vnpu-demo", "--json").stdout)
    assert shown["backend"] == "vnpu" and shown["details"]["compiler"] == "vnpuc 1.2.0"
    assert shown["fingerprint"] == {"sku": "VN-1"}
    assert "--sku" in shown["argv"] and "VN-1" in shown["argv"]  # the flag stage_flags filled


@pytest.mark.slow
def test_the_reference_is_the_models_own_greedy_text() -> None:
    """The NumPy reference the C runtime is held to gives PyTorch's greedy tokens."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from rmbuild.runtime.tokenizer import Tokenizer

    ids = Tokenizer(MODEL).encode(PROMPT)
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=STEPS, do_sample=False, pad_token_id=0
        )
    expected = out[0, len(ids) :].tolist()
    eos = model.config.eos_token_id
    expected = expected[: expected.index(eos)] if eos in expected else expected
    assert _reference_tokens() == expected


@pytest.mark.slow
def test_the_package_passes_its_own_tests_and_the_contract_kit(venv) -> None:  # noqa: ANN001
    tested = subprocess.run(
        [str(venv["bin"] / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"],  # type: ignore[operator]
        capture_output=True,
        text=True,
        env=venv["env"],  # type: ignore[arg-type]
        cwd=EXAMPLE,
    )
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert re.search(r"\b12 passed\b", tested.stdout) and "skipped" not in tested.stdout
    for part in ("interface", "availability", "templates", "probe_facts_in_key", "session"):
        assert f"test_{part}" not in tested.stdout  # none failed or was skipped
    kit = subprocess.run(
        [
            str(venv["bin"] / "python"),
            "-m",
            "rmbuild.testing",
            "test_vnpu:TestVnpuContract.contract",
        ],  # type: ignore[operator]
        capture_output=True,
        text=True,
        env=venv["env"],  # type: ignore[arg-type]
        cwd=EXAMPLE / "tests",
    )
    assert kit.returncode == 0, kit.stdout
    assert kit.stdout.strip().splitlines()[-1] == "8 passed, 0 failed, 0 skipped"
