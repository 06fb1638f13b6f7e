"""Resource discovery for `info` (issue 7): each vendor's documented way, never failing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rmbuild import resources


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
