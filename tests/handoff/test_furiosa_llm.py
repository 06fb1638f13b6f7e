"""``--to furiosa-llm``: the HF files and the ``.fxb`` named as ``furiosa-llm serve``
discovers it.

furiosa-llm (its 7.5 GiB toolchain) is not installed by these tests. The contract is
furiosa-llm 2026.4.0's ``furiosa_llm/utils.py``, ``discover_fxb``: one ``.fxb`` in the folder
is taken as is; among several, those whose name, split from the right into
``{name}-{npu_tools_rev}-{runtime_rev}-{timestamp}``, has an ``npu_tools_rev`` starting with
the installed npu-ir revision are kept, and the greatest name wins. The bundle is checked
against that contract on a stand-in ``.fxb`` (a zip with the manifest layout fxb 2026.4
writes); where the ``furiosa`` toolchain is provisioned, furiosa-llm's own ``discover_fxb``
runs on the bundle too.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmbuild.errors import IncompatibleArtifact
from rmbuild.handoff import furiosa_llm
from rmbuild.handoff.artifact import Artifact
from rmbuild.handoff.bundle import ExportOptions, write

IR_REV = "3c1f2a9e7"
# furiosa's own tools, which the export runs where the toolchain is provisioned; the tests of
# the contract on a stand-in .fxb replace them (fxb refuses a stand-in, as the last test shows).
FURIOSAS_OWN = furiosa_llm._checked_by_furiosa


@pytest.fixture(autouse=True)
def _contract_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(furiosa_llm, "_checked_by_furiosa", lambda root, fxb: [])


MANIFEST = {
    "format_version": 2,
    "versions": {
        "furiosa_llm": {"version": "2026.4.0", "revision": "b1baffa75"},
        "furiosa_compiler": {"version": "2026.4.0", "revision": "ae27d44cd8"},
    },
    "parallel_config": {"tensor_parallel_size": 1, "pipeline_parallel_size": 1},
    "kernels": {
        "full_attention": [
            {
                "bucket": {"attention": {"batch_size": 1, "attention_size": 128}},
                "file": "edfs/fa_b1_a128.edf",
            }
        ]
    },
}


def _rngd_artifact(tmp_path: Path, *, ir_rev: str | None = IR_REV, tp: int = 1) -> Artifact:
    """An RNGD artifact as the store records one: a stand-in .fxb and the HF files."""
    tree = tmp_path / "tree"
    tree.mkdir()
    with zipfile.ZipFile(tree / "model.fxb", "w") as zf:
        zf.writestr("manifest.json", json.dumps(MANIFEST))
        zf.writestr("edfs/fa_b1_a128.edf", b"STAND-IN EDF")
    (tree / "config.json").write_text(
        json.dumps({"model_type": "llama", "max_position_embeddings": 256})
    )
    (tree / "tokenizer.json").write_text("{}")
    (tree / "model.safetensors").write_bytes(b"weights")
    (tree / "rngd.json").write_text(json.dumps({"versions": MANIFEST["versions"]}))
    fp = {"tp": tp, "pp": 1, "npu_target": "renegade-8pe", "furiosa_llm": "2026.4.0"}
    if ir_rev:
        fp["llm_native_ir_git_short_hash"] = ir_rev
        fp["llm_native_git_full_hash"] = "9d8e7f6a5b4c3d2e1f00"
    record = SimpleNamespace(
        key="cd" * 32,
        model="tiny-llama",
        target="rngd",
        backend="furiosa",
        manifest_digest="0" * 64,
        created_at=datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC),
        metadata={
            "profile": "furiosa-rngd",
            "flags": {"max_model_len": 256, "attention_buckets": "(1,128,128),(2,256,1)"},
            "fingerprint": fp,
        },
    )
    files = {p.name: "x" for p in tree.iterdir()}
    store = SimpleNamespace(get=lambda _key: None, root=tmp_path)
    return Artifact(record, tree, files, store)  # type: ignore[arg-type]


def _bundle(tmp_path: Path, **kwargs) -> Path:  # noqa: ANN003
    plan = furiosa_llm.plan([_rngd_artifact(tmp_path, **kwargs)], ExportOptions())
    write(plan, tmp_path / "bundle", furiosa_llm.check)
    return tmp_path / "bundle"


def test_the_fxb_is_named_for_discovery_beside_the_hf_files(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    fxbs = sorted(p.name for p in root.glob("*.fxb"))
    assert fxbs == [f"tiny-llama-{IR_REV}-9d8e7f6a5-20261130T123456Z.fxb"]
    name, npu_rev, runtime_rev, stamp = furiosa_llm.parse_fxb_name(fxbs[0])
    assert (name, npu_rev, runtime_rev, stamp) == (
        "tiny-llama",
        IR_REV,
        "9d8e7f6a5",
        "20261130T123456Z",
    )
    assert (root / "config.json").is_file() and (root / "model.safetensors").is_file()
    assert not (root / "model.fxb").exists() and not (root / "rngd.json").exists()
    script = (root / "serve.sh").read_text()
    assert 'exec furiosa-llm serve "$here" --served-model-name tiny-llama' in script
    assert "--max-model-len 256" in script and "--devices npu:0" in script
    assert "--max-concurrency 2" in script  # the largest attention bucket's batch
    versions = json.loads((root / "versions.json").read_text())
    assert versions["serving"]["npu-ir revision"] == IR_REV
    assert versions["serving"]["fxb versions"]["furiosa_compiler"]["revision"] == "ae27d44cd8"


def test_discovery_among_several_bundles_takes_the_newest_of_the_installed_revision(
    tmp_path: Path,
) -> None:
    root = _bundle(tmp_path)
    ours = next(root.glob("*.fxb"))
    # An older build of the same revision, and a newer one of another revision.
    (root / f"tiny-llama-{IR_REV}-9d8e7f6a5-20250101T000000Z.fxb").write_bytes(b"old")
    (root / "tiny-llama-ffff000-9d8e7f6a5-20271231T000000Z.fxb").write_bytes(b"other")
    assert furiosa_llm.discover(root, IR_REV) == ours
    assert furiosa_llm.discover(root, IR_REV + "-modified") == ours  # the suffix is dropped
    with pytest.raises(FileNotFoundError, match="matches revision"):
        furiosa_llm.discover(root, "0123abc")


def test_a_dash_in_a_revision_cannot_move_the_split() -> None:
    name = furiosa_llm.fxb_name(
        "my-model", "ab-cd-modified", "12-34", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert furiosa_llm.parse_fxb_name(name) == ("my-model", "abcd", "1234", "20260102T030405Z")


def test_an_artifact_without_the_npu_ir_revision_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IncompatibleArtifact, match="npu-ir revision"):
        _bundle(tmp_path, ir_rev=None)
    assert not (tmp_path / "bundle").exists()


def test_tensor_parallelism_past_one_chip_names_more_devices(tmp_path: Path) -> None:
    plan = furiosa_llm.plan([_rngd_artifact(tmp_path, tp=16)], ExportOptions())
    assert plan.command.flags()["--devices"] == "npu:0,npu:1"


def test_furiosa_llms_own_discovery_picks_the_bundles_fxb(tmp_path: Path) -> None:
    """With the provisioned furiosa toolchain, furiosa-llm's discover_fxb itself."""
    from rmbuild.backends.furiosa import probe
    from rmbuild.toolrun import provision

    toolchain = probe.toolchain()
    if not provision.status(toolchain).installed:
        pytest.skip(
            "the furiosa toolchain is not provisioned (`rmbuild toolchain install furiosa`, "
            "7.5 GiB); the documented contract is tested above"
        )
    root = _bundle(tmp_path)
    code = (
        "import sys; from furiosa_llm.utils import discover_fxb; print(discover_fxb(sys.argv[1]))"
    )
    done = subprocess.run(
        [str(toolchain.python_path), "-c", code, str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == next(root.glob("*.fxb"))


def test_max_model_len_may_lower_the_fxbs_limit_never_raise_it(tmp_path: Path) -> None:
    art = _rngd_artifact(tmp_path)
    lower = furiosa_llm.plan([art], ExportOptions(max_model_len=128))
    assert lower.command.flags()["--max-model-len"] == "128"
    with pytest.raises(IncompatibleArtifact, match="compiled limit of 256"):
        furiosa_llm.plan([art], ExportOptions(max_model_len=512))


def test_without_the_toolchain_the_export_says_furiosas_tools_did_not_check_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _bundle(tmp_path)
    monkeypatch.setenv("RMBUILD_DATA_DIR", str(tmp_path / "no-toolchains"))
    (line,) = FURIOSAS_OWN(root, next(root.glob("*.fxb")))
    assert line.startswith("not checked with furiosa's own tools")
    assert "rmbuild toolchain install furiosa" in line


def test_with_the_toolchain_fxb_itself_refuses_a_stand_in_fxb(tmp_path: Path) -> None:
    """Where the furiosa toolchain is provisioned (.ci/npu.sh): fxb's own reading of a .fxb
    fails the export, with fxb's words (the real build's bundle passes: test_rngd_e2e.py)."""
    from rmbuild.backends.furiosa import probe
    from rmbuild.toolrun import provision

    if not provision.status(probe.toolchain()).installed:
        pytest.skip("the furiosa toolchain is not provisioned: rmbuild toolchain install furiosa")
    root = _bundle(tmp_path)
    with pytest.raises(IncompatibleArtifact, match=r"`fxb (add|check|inspect)`") as refused:
        FURIOSAS_OWN(root, next(root.glob("*.fxb")))
    assert refused.value.context  # the tool's last lines
