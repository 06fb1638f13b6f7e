"""``--to vllm-rbln``: the compiled folder and the ``vllm serve`` flags, held to vllm-rbln
0.12's rules (its ``converter/params.py`` and ``converter/from_optimum.py``).

The artifacts are the RBLN contract tests' own: the REAL optimum-rbln 0.12.0 compiling the
example over a STAND-IN ``rebel`` compiler (tests/backends/rbln/conftest.py, whose fixtures
are loaded here), so ``rbln_config.json`` is the one optimum-rbln writes; the rules are also
tested on hand-written configs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from rmbuild.errors import IncompatibleArtifact
from rmbuild.handoff import vllm_rbln
from rmbuild.handoff.bundle import ExportOptions

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "rbln_fixtures_for_handoff", REPO / "tests" / "backends" / "rbln" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_rbln = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _rbln  # its dataclasses look their module up
_spec.loader.exec_module(_rbln)
rbln_sdk = _rbln.rbln_sdk  # session fixtures: the SDK venv, then the compiled artifacts
rbln_built = _rbln.rbln_built

CONFIG = {
    "batch_size": 4,
    "max_seq_len": 8192,
    "kvcache_block_size": 4096,
    "kvcache_num_blocks": 8,
    "prefill_chunk_size": 128,
}


def _export(built, target: str, out: Path, **options):  # noqa: ANN001, ANN202
    from artifact_store import Store
    from rmbuild.handoff import export

    with Store(built.store) as store:
        return export(
            [built.artifacts[target]],
            "vllm-rbln",
            out,
            store=store,
            options=ExportOptions(**options),
        )


def test_the_compiled_folder_and_flags_that_agree(rbln_built, tmp_path: Path) -> None:  # noqa: ANN001
    bundle = _export(rbln_built, "atom", tmp_path / "b")
    root = bundle.root
    config = json.loads((root / "model" / "rbln_config.json").read_text())
    flags = bundle.plan.command.flags()
    assert flags["--max-num-seqs"] == str(config["batch_size"])
    assert flags["--max-model-len"] == str(config["max_seq_len"])
    assert flags["--block-size"] == str(config["kvcache_block_size"])
    assert sorted(p.name for p in (root / "model").glob("*.rbln"))  # the compiled graphs
    # Hard links into the store: no byte copied, read-only.
    assert os.stat(root / "model" / "rbln_config.json").st_mode & 0o222 == 0
    assert bundle.plan.command.env == {"RBLN_VISIBLE_DEVICES": "0"}
    versions = json.loads((root / "versions.json").read_text())
    assert versions["serving"]["optimum-rbln"] == config["optimum_rbln_version"]
    assert versions["serving"]["vllm-rbln"] == "0.12.*"
    assert versions["serving"]["vllm"] == "0.30.0+cpu"
    assert any("overrides nothing" in line for line in bundle.checked)
    assert vllm_rbln.disagreements(vllm_rbln.rbln_params(config), flags) == []


def test_two_devices_are_named_for_the_server(rbln_built, tmp_path: Path) -> None:  # noqa: ANN001
    bundle = _export(rbln_built, "atom-x2", tmp_path / "b")
    assert bundle.plan.command.env == {"RBLN_VISIBLE_DEVICES": "0,1"}
    assert (
        'export RBLN_VISIBLE_DEVICES="${RBLN_VISIBLE_DEVICES:-0,1}"'
        in (bundle.root / "serve.sh").read_text()
    )


def test_a_max_model_len_other_than_the_compiled_is_refused(rbln_built, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(IncompatibleArtifact, match="takes the compiled length"):
        _export(rbln_built, "atom", tmp_path / "b", max_model_len=64)
    assert not (tmp_path / "b").exists()


def test_vllm_rbln_rules_on_written_configs() -> None:
    params = vllm_rbln.rbln_params(CONFIG)
    assert params["num_blocks"] == 8 and params["kvcache_block_size"] == 4096
    assert vllm_rbln.full_blocks(params)  # 8 >= 4 sequences x 2 blocks
    assert not vllm_rbln.full_blocks({**params, "num_blocks": 7})
    # kvcache_partition_len stands in for the block size, and must equal it where both are.
    alone = {k: v for k, v in CONFIG.items() if k != "kvcache_block_size"}
    assert (
        vllm_rbln.rbln_params({**alone, "kvcache_partition_len": 2048})["kvcache_block_size"]
        == 2048
    )
    with pytest.raises(IncompatibleArtifact, match="kvcache_partition_len 2048 differs"):
        vllm_rbln.rbln_params({**CONFIG, "kvcache_partition_len": 2048})
    with pytest.raises(IncompatibleArtifact, match="lacks kvcache_num_blocks"):
        vllm_rbln.rbln_params({k: v for k, v in CONFIG.items() if k != "kvcache_num_blocks"})


def test_flags_that_vllm_rbln_would_override_are_named() -> None:
    params = vllm_rbln.rbln_params(CONFIG)
    flags = vllm_rbln.flags_for(params)
    good = dict(zip(flags[::2], flags[1::2], strict=True))
    assert vllm_rbln.disagreements(params, good) == []
    wrong = vllm_rbln.disagreements(
        params, {**good, "--max-num-seqs": "8", "--max-num-batched-tokens": "256"}
    )
    assert any("--max-num-seqs 8" in w and "batch_size = 4" in w for w in wrong)
    assert any("prefill_chunk_size 128" in w for w in wrong)
    prefix = vllm_rbln.disagreements(
        {**params, "kvcache_block_size": 4000},
        {**good, "--block-size": "4000", "--enable-prefix-caching": "x"},
    )
    assert any("not a multiple of prefill_chunk_size" in w for w in prefix)
