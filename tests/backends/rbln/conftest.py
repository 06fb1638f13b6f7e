"""Fixtures of the RBLN contract tests: the REAL optimum-rbln 0.12.0 from PyPI over a
STAND-IN ``rebel`` (tests/fakes/standin_rebel), registered as a project's ``rbln`` toolchain.

rebel-compiler comes only from Rebellions' own index, so it cannot be installed here; optimum-rbln
can (PyPI, pure Python). Once per test session a small venv is made (``--without-pip``; rmbuild's
pip installs into it with ``--no-deps``): optimum-rbln 0.12.0, transformers 5.15.1 and the few
packages transformers 5 needs beyond rmbuild's venv (huggingface-hub 1.x, httpx), in about ten
seconds. Everything else (torch 2.13.0+cpu, numpy, ...) comes from rmbuild's own venv through a
``.pth`` line placed after the venv's own site-packages, so transformers 5.15.1 shadows the 4.57
of the onnx extra. A second ``.pth`` puts the stand-in ``rebel`` on the path, and a stand-in
``rebel_compiler-0.12.0.dist-info`` makes its version readable the way the real wheel's is.

So optimum-rbln's own argument handling, HF loading, wrapping, compile-config building,
``save_pretrained`` and ``from_pretrained(export=False)`` all run for real; only the compiler
and the device runtime are imitated. Tests that need it skip with the reason where torch is
missing (the light CI venv) or PyPI cannot be reached.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
STANDIN_REBEL = REPO / "tests" / "fakes" / "standin_rebel"
TINY_MODEL = REPO / "examples" / "tiny-llama" / "model"
# What rmbuild's venv lacks for optimum-rbln 0.12 + transformers 5.15.1 (found by importing).
SDK_PACKAGES = [
    "optimum-rbln==0.12.0",
    "transformers==5.15.1",
    "huggingface-hub>=1.5,<2",
    "tokenizers==0.22.1",
    "safetensors>=0.8",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "idna",
    "certifi",
]
CLI_CODE = "import sys; from rmbuild.cli import main; sys.exit(main(sys.argv[1:]))"
STANDIN_DIST = """\
Metadata-Version: 2.1
Name: rebel-compiler
Version: 0.12.0
Summary: STAND-IN for Rebellions' rebel-compiler (rmbuild tests only; tests/fakes/standin_rebel)
"""
STANDIN_KNOBS = [
    "STANDIN_REBEL_DEVICES",
    "STANDIN_REBEL_NPU",
    "STANDIN_REBEL_FAIL",
    "STANDIN_REBEL_COUNTER",
    "STANDIN_REBEL_VERSION",
]


def toolchain_yaml(python: str | None) -> str:
    """A project's ``rbln`` toolchain file: a registered environment (``python:``), the way a
    vendor install is registered, with the stand-in's knobs as runtime-only variables."""
    return (
        "name: rbln\n"
        "description: TEST toolchain - real optimum-rbln 0.12 over a STAND-IN rebel\n"
        f"python: {json.dumps(python)}\n"
        "packages: [optimum-rbln, rebel-compiler, torch, transformers]\n"
        f"runtime_env: [{', '.join(STANDIN_KNOBS)}]\n"
    )


@pytest.fixture(scope="session")
def rbln_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test SDK venv's Python (see the module docstring); skips with the reason."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("the RBLN contract tests need torch in rmbuild's venv (the onnx extra)")
    root = tmp_path_factory.mktemp("rbln-sdk")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--no-deps",
                "--no-input",
                "--disable-pip-version-check",
                "-q",
                *SDK_PACKAGES,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("installing optimum-rbln 0.12.0 from PyPI took over 10 minutes")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"optimum-rbln 0.12.0 could not be installed from PyPI: {last}")
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # zz_: processed after the venv's own packages, so its transformers wins.
    (site / "zz_rmbuild_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site / "standin_rebel.pth").write_text(str(STANDIN_REBEL) + "\n")
    dist = site / "rebel_compiler-0.12.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(STANDIN_DIST)
    (dist / "RECORD").write_text("")
    check = subprocess.run(
        [str(python), "-c", "import optimum.rbln, rebel; print(optimum.rbln.__version__)"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        pytest.skip(f"optimum-rbln does not import here: {check.stderr.strip()[-300:]}")
    return python


@dataclass
class RBLNProject:
    root: Path
    spec: Path
    counter: Path

    def compiles(self) -> int:
        """Graphs the stand-in compiler compiled so far (prefill + decoders)."""
        return len(self.counter.read_text().splitlines()) if self.counter.exists() else 0


def make_project(
    root: Path, python: str | None, targets: dict[str, dict[str, object]] | None = None
) -> Path:
    """tiny-llama with targets on rbln-ca25 (default: ``atom`` with the profile's flags)."""
    (root / ".git").mkdir(parents=True)
    shutil.copytree(TINY_MODEL, root / "model")
    (root / "profiles" / "toolchains").mkdir(parents=True)
    (root / "profiles" / "toolchains" / "rbln.yaml").write_text(toolchain_yaml(python))
    lines = ["name: tiny-llama", "source:", "  path: model", "targets:"]
    for name, flags in (targets or {"atom": {}}).items():
        lines += [f"  {name}:", "    profile: rbln-ca25"]
        if flags:
            lines.append("    flags:")
            lines += [f"      {k}: {json.dumps(v)}" for k, v in flags.items()]
    spec = root / "model.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


@dataclass
class Built:
    """Artifacts compiled once per session (the compiles are the slow part)."""

    root: Path
    spec: Path
    store: Path
    counter: Path
    artifacts: dict[str, str]


@pytest.fixture(scope="session")
def rbln_built(rbln_sdk: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``atom`` (RBLN-CA25, 1 device) and ``atom-x2`` (2 devices), compiled through the CLI in
    a store of the session's own."""
    base = tmp_path_factory.mktemp("rbln-built")
    spec = make_project(base / "proj", str(rbln_sdk), {"atom": {}, "atom-x2": {"num_devices": 2}})
    store, counter = base / "store", base / "compiles.txt"
    env = {k: v for k, v in os.environ.items() if k not in STANDIN_KNOBS}
    env.update(
        RMBUILD_STORE=str(store),
        RMBUILD_CONFIG_DIR=str(base / "config"),
        STANDIN_REBEL_COUNTER=str(counter),
    )
    env.pop("RMBUILD_INDEX_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", CLI_CODE, "compile", str(spec), "--all", "--json"],
        cwd=spec.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    artifacts = {row["target"]: row["artifact"] for row in json.loads(done.stdout)}
    return Built(spec.parent, spec, store, counter, artifacts)


@pytest.fixture
def built(rbln_built: Built, monkeypatch: pytest.MonkeyPatch) -> Built:
    """The session's artifacts, this test in their store and project, no RBLN device."""
    for name in STANDIN_KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RMBUILD_STORE", str(rbln_built.store))
    monkeypatch.delenv("RMBUILD_INDEX_URL", raising=False)
    monkeypatch.setenv("STANDIN_REBEL_COUNTER", str(rbln_built.counter))
    monkeypatch.chdir(rbln_built.root)
    return rbln_built


@pytest.fixture
def rbln_project(
    rbln_sdk: Path, tmp_path: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> RBLNProject:
    """tiny-llama with one target ``atom`` (rbln-ca25), the test SDK as its rbln toolchain,
    no RBLN device (like CI), and a compile counter."""
    root = tmp_path / "proj"
    spec = make_project(root, str(rbln_sdk))
    counter = tmp_path / "compiles.txt"
    for name in STANDIN_KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STANDIN_REBEL_COUNTER", str(counter))
    monkeypatch.chdir(root)
    return RBLNProject(root, spec, counter)
