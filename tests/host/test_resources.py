"""Resource discovery for `info`: each vendor's documented way, never failing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rmbuild.host import resources


def _tool(folder: Path, name: str, output: str) -> None:
    path = folder / name
    path.write_text(f"#!{sys.executable}\nprint({output!r})\n")
    path.chmod(0o755)


def test_nvidia_smi_query_gives_name_driver_and_compute_capability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tool(tmp_path, "nvidia-smi", "NVIDIA H100 80GB HBM3, 570.86.15, 9.0")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(resources.importlib.util, "find_spec", lambda name: None)  # no NVML
    (gpu,) = resources.nvidia()
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["driver"] == "570.86.15"
    assert gpu["compute_capability"] == "9.0" and gpu["class"] == "gpu"
    assert gpu["source"] == "nvidia-smi"


def test_rebellions_smi_output_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tool(tmp_path, "rbln-smi", "RBLN-CA25 x1")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = resources.rebellions()
    assert found["smi_output"] == "RBLN-CA25 x1"


def test_compile_policy_discovery_starts_nothing_in_the_furiosa_toolchain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process started: {args}")

    monkeypatch.setattr(resources.subprocess, "run", refuse)
    monkeypatch.setattr(resources.shutil, "which", lambda name: None)
    monkeypatch.setattr(resources, "nvidia", lambda: [])
    found = resources.discover(smi=False)
    assert found["furiosa"]["smi"] is None
    assert isinstance(found["devices"], list)


def test_cpu_is_always_a_device() -> None:
    (cpu,) = resources.devices_of("cpu")
    assert cpu["class"] == "cpu"


SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "HF_TOKEN": "hf_secret",
    "LD_PRELOAD": "/nonexistent/preload.so",
    "PYTHONPATH": "/nonexistent/pythonpath",
}


def _env_dumping_tool(folder: Path, name: str, dump: Path, output: str) -> None:
    path = folder / name
    path.write_text(
        f"#!{sys.executable}\nimport json, os\n"
        f"open({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\nprint({output!r})\n"
    )
    path.chmod(0o755)


@pytest.mark.parametrize("tool", ["nvidia-smi", "rbln-smi"])
def test_device_tools_get_none_of_the_callers_secrets(
    tool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = tmp_path / "env.json"
    _env_dumping_tool(tmp_path, tool, dump, "NVIDIA H100, 570.86.15, 9.0")
    monkeypatch.setenv("PATH", str(tmp_path))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(resources.importlib.util, "find_spec", lambda name: None)  # no NVML
    resources.nvidia() if tool == "nvidia-smi" else resources.rebellions()
    seen = json.loads(dump.read_text())
    assert not set(SECRETS) & set(seen), sorted(seen)


def test_furiosa_smi_runs_isolated_in_the_toolchains_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmbuild.toolrun import provision, toolchains

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dump = tmp_path / "env.json"
    # A stand-in furiosa_smi module that records the environment it was imported in.
    (Path(purelib) / "furiosa_smi.py").write_text(
        f"import json, os, sys\nopen({str(dump)!r}, 'w').write(json.dumps("
        "{'env': dict(os.environ), 'path': sys.path}))\n"
        "def list_devices():\n    return []\n"
        "def driver_info():\n    return 'stand-in 1.0'\n"
    )
    toolchain = toolchains.Toolchain(name="furiosa", python=str(python), runtime_env=["RNGD_X"])
    monkeypatch.setattr(toolchains, "find_toolchain", lambda name, start=None: toolchain)
    monkeypatch.setattr(
        provision, "status", lambda tc: provision.Status(tc.name, "registered", True, venv)
    )
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RNGD_X", "passed")
    found = resources.furiosa()
    assert found["smi"] is not None and found["smi"]["error"] is None, found
    seen = json.loads(dump.read_text())
    assert not set(SECRETS) & set(seen["env"]), sorted(seen["env"])
    assert seen["env"]["RNGD_X"] == "passed"  # what the toolchain passes through still does
    assert "/nonexistent/pythonpath" not in seen["path"]
