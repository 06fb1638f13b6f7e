"""The FuriosaAI RNGD backend without the SDK: NPU target, fingerprint, .fxb facts, the refusal
to run here, and the fxb wrapper's checks."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rmbuild.backends.furiosa import plugin, probe
from rmbuild.errors import IncompatibleArtifact

WRAPPER = Path(__file__).resolve().parents[3] / "rmbuild" / "tools" / "fxb_build.py"


def test_npu_target_at_tp_1_is_the_one_fxb_was_seen_to_use() -> None:
    # Seen: fxb 2026.4 at -tp 1 ran furiosa-tcc --target-npu renegade-8pe (one whole chip).
    # Above TP 1 the target string is inferred (the README says so), never seen: not asserted.
    assert probe.npu_target(1) == "renegade-8pe"


class _Toolchain:
    def identity(self) -> dict[str, Any]:
        return {
            "packages": {"furiosa-llm": "2026.4.0", "furiosa-tcc": "2026.4.0"},
            "probe": {
                "furiosa_llm_git_version": "2026.4.0+gb1baffa",
                "furiosa_tcc_version": "tcc v2026.4.0 (b1baffa75), furiosa-compiler 2026.4.0",
            },
        }


def test_fingerprint_holds_versions_revisions_and_target() -> None:
    fp = plugin.FuriosaBackend().fingerprint(None, {"tp": 1, "pp": 1}, _Toolchain())  # type: ignore[arg-type]
    assert fp["npu_target"] == "renegade-8pe" and fp["tp"] == 1
    assert fp["furiosa_llm"] == "2026.4.0"
    assert fp["furiosa_llm_git_version"] == "2026.4.0+gb1baffa"
    assert "b1baffa75" in fp["furiosa_tcc_version"]


def test_every_placement_keys_a_build_of_its_own_whatever_the_inferred_target() -> None:
    """The NPU target above TP 1 is inferred, so the key must not rest on it: TP and PP enter
    the fingerprint themselves, and no two placements share one."""
    backend = plugin.FuriosaBackend()
    placements = [(tp, pp) for tp in (1, 2, 4, 8, 16, 32) for pp in (1, 2)]
    fps = {
        (tp, pp): backend.fingerprint(None, {"tp": tp, "pp": pp}, _Toolchain())  # type: ignore[arg-type]
        for tp, pp in placements
    }
    assert all(fp["tp"] == tp and fp["pp"] == pp for (tp, pp), fp in fps.items())
    assert len({json.dumps(fp, sort_keys=True) for fp in fps.values()}) == len(placements)


def _fxb(path: Path, manifest: dict[str, Any], edfs: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name in edfs:
            zf.writestr(name, b"Edf")
    return path


def test_fxb_facts_read_the_manifest_and_find_missing_kernels(tmp_path: Path) -> None:
    # The shape of a 2026.4 manifest (format_version 2), as fxb build wrote it here.
    manifest = {
        "format_version": 2,
        "uuid": "x",
        "created_at": "now",
        "versions": {
            "furiosa_llm": {"version": "2026.4.0", "revision": "b1baffa75"},
            "furiosa_compiler": {"version": "2026.4.0", "revision": "ae27d44cd8"},
        },
        "parallel_config": {"tensor_parallel_size": 1, "pipeline_parallel_size": 1},
        "kernels": {
            "full_attention": [
                {
                    "bucket": {
                        "attention": {"batch_size": 1, "attention_size": 128, "kv_cache_size": 0}
                    },
                    "file": "edfs/full_attention_b1_a128_kv0.edf",
                }
            ],
            "mid_tokenwise": [
                {"bucket": {"tokenwise": {"input_size": 128}}, "file": "edfs/mid_tw128.edf"}
            ],
        },
    }
    fxb = _fxb(tmp_path / "m.fxb", manifest, ["edfs/full_attention_b1_a128_kv0.edf"])
    facts = plugin.fxb_facts(fxb)
    assert facts["versions"]["furiosa_compiler"]["revision"] == "ae27d44cd8"
    assert facts["parallel"]["tensor_parallel_size"] == 1
    assert '"x"' not in json.dumps(facts) and '"now"' not in json.dumps(facts)  # uuid, created_at
    assert facts["kernels"] == {
        "full_attention": ["attention b1 a128 kv0"],
        "mid_tokenwise": ["tokenwise 128"],
    }
    assert facts["kernels_missing"] == ["edfs/mid_tw128.edf"]
    assert facts["byte_reproducible"] is False


def test_run_is_refused_here_naming_devices_and_the_serve_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rmbuild.host.resources as resources

    found = {
        "furiosa": {"devices": []},
        "devices": [{"class": "gpu", "name": "NVIDIA H100", "vendor": "nvidia"}],
    }
    monkeypatch.setattr(resources, "discover", lambda: found)
    with pytest.raises(IncompatibleArtifact, match="no RNGD device") as exc:
        plugin.FuriosaBackend().check_compatible({"profile": "furiosa-rngd"})
    assert exc.value.exit_code == 6
    assert "gpu: NVIDIA H100" in " ".join(exc.value.context)
    assert "`rmbuild checkout <artifact> DIR`" in (exc.value.hint or "")
    assert "`furiosa-llm serve DIR`" in (exc.value.hint or "")
    from rmbuild.cli import COMMANDS

    assert "checkout" in COMMANDS  # the command the hint names exists


def _fake_env(tmp_path: Path, fxb_body: str) -> Path:
    """A bin dir with a python (link) and a stand-in fxb next to it, as in the toolchain."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    fxb = bin_dir / "fxb"
    fxb.write_text(f"#!{sys.executable}\n{fxb_body}")
    fxb.chmod(0o755)
    return bin_dir


def _wrapper(bin_dir: Path, path: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "python"), str(WRAPPER), "build", "model", "out.fxb"],
        env={"PATH": path, "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_missing_cross_gcc_is_refused_before_fxb_runs(tmp_path: Path) -> None:
    ran = tmp_path / "fxb-ran"
    bin_dir = _fake_env(tmp_path, f"open({str(ran)!r}, 'w').close()\n")
    done = _wrapper(bin_dir, str(tmp_path / "empty"), tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "aarch64-linux-gnu-gcc not found" in done.stdout
    assert "apt-get install -y gcc-aarch64-linux-gnu" in done.stdout
    assert not ran.exists()  # nothing of the multi-minute compile started


def test_unsupported_model_keeps_the_vendor_message_and_lists_families(tmp_path: Path) -> None:
    gcc_dir = tmp_path / "gcc"
    gcc_dir.mkdir()
    gcc = gcc_dir / "aarch64-linux-gnu-gcc"
    gcc.write_text("#!/bin/sh\nexit 0\n")
    gcc.chmod(0o755)
    kernels = tmp_path / "site" / "furiosa" / "kernels"
    for family in ("common", "llama", "qwen3"):
        (kernels / family).mkdir(parents=True)
        (kernels / family / "__init__.py").write_text("")
    (kernels / "__init__.py").write_text("")
    message = "error: no model registry entry for architecture=GPT2LMHeadModel"
    bin_dir = _fake_env(tmp_path, f"import sys\nprint({message!r})\nsys.exit(1)\n")
    done = _wrapper(bin_dir, str(gcc_dir), tmp_path, PYTHONPATH=str(tmp_path / "site"))
    assert done.returncode == 5
    assert message in done.stdout
    assert "Families with RNGD kernels in this furiosa-llm: llama, qwen3" in done.stdout


def test_backend_is_registered_and_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RMBUILD_DATA_DIR", str(tmp_path / "data"))
    avail = plugin.FuriosaBackend().availability()
    assert not avail.ok
    assert avail.install == "rmbuild toolchain install furiosa"


def test_the_profile_runs_the_wrapper_these_tests_check() -> None:
    """The fxb wrapper tested above is the very script the furiosa-rngd profile runs."""
    from rmbuild.declare.profiles import find_profile
    from rmbuild.toolrun.adapter import BinaryCompilerAdapter
    from rmbuild.toolrun.toolchains import find_toolchain

    profile = find_profile("furiosa-rngd").profile
    adapter = BinaryCompilerAdapter(profile, find_toolchain(profile.toolchain), None)
    assert adapter.script_path() == WRAPPER and WRAPPER.is_file()
