"""A real RNGD compile end to end through the CLI (issue 7): ``fxb build`` in the provisioned
furiosa toolchain on this CPU host, stored and keyed like any artifact.

Skipped unless the furiosa toolchain is installed (``rmbuild toolchain install furiosa``), the
aarch64 cross gcc is present, and ``RMBUILD_NPU_E2E=1`` (a cold build takes minutes on 2 cores;
``.ci/npu.sh`` provisions everything and sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tiny-llama" / "model.yaml"


@pytest.fixture
def furiosa_ready() -> None:
    from rmbuild import provision
    from rmbuild.toolchains import find_toolchain

    st = provision.status(find_toolchain("furiosa"))
    if not st.installed:
        pytest.skip(f"furiosa toolchain {st.reason}: rmbuild toolchain install furiosa")
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc missing: sudo apt-get install -y gcc-aarch64-linux-gnu")
    if os.environ.get("RMBUILD_NPU_E2E") != "1":
        pytest.skip("a real RNGD compile takes minutes: set RMBUILD_NPU_E2E=1 (.ci/npu.sh does)")


def test_rngd_build_through_the_cli(furiosa_ready: None, store_dir: Path, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(EXAMPLE), "--target", "npu", "--json")
    assert r.code == 0, r.err
    built = {row["target"]: row for row in json.loads(r.out)}
    rngd = built["rngd"]
    assert not rngd["hit"]

    # The key is stable: a second plan gives the same key, a hit that runs no tool.
    again = {
        row["target"]: row
        for row in json.loads(cli("compile", str(EXAMPLE), "-t", "rngd", "--json").out)
    }
    assert again["rngd"]["hit"] and again["rngd"]["artifact"] == rngd["artifact"]

    from artifact_store import Store

    with Store(store_dir) as store:
        folder = store.materialize(rngd["artifact"])
    # Laid out for `furiosa-llm serve <folder>`: the .fxb beside the HF files it loads.
    for name in ("model.fxb", "config.json", "tokenizer.json", "model.safetensors"):
        assert (folder / name).is_file(), name
    with zipfile.ZipFile(folder / "model.fxb") as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read(next(n for n in names if n.endswith("manifest.json"))))
    text = json.dumps(manifest)
    assert "2026.4.0" in text  # compiler and furiosa-llm versions recorded
    edfs = [n for n in names if n.endswith(".edf")]
    assert edfs

    info = json.loads(cli("show", rngd["artifact"], "--json").out)
    details = info["details"]
    assert details["kernels_missing"] == []  # every kernel the manifest names is inside
    assert details["byte_reproducible"] is False
    assert len(details["edf_files"]) == len(edfs)
    assert details["versions"]["furiosa_compiler"]["revision"]  # versions with revisions
    assert details["parallel"]["tensor_parallel_size"] == 1
    assert sum(len(b) for b in details["kernels"].values()) == len(edfs)
    fp = info["fingerprint"]
    assert fp["npu_target"] and fp["furiosa_llm"] == "2026.4.0"
    assert "furiosa-compiler" in fp["furiosa_tcc_version"]

    r = cli("run", "--artifact", rngd["artifact"], "--max-tokens", "4")
    r.assert_failure(6)
    assert "no RNGD device" in r.err and "furiosa-llm serve" in r.err
