"""The RBLN backend without the SDK: what keys an artifact, the refusals made before
any tool runs (deprecated names, no SKU), the load-time checks (SKU, device count, compiler
version; rebel's answer stubbed), the vllm-rbln command, and the compile entry's own checks.
These run everywhere, the light CI venv included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rmbuild.backends.rbln import plugin, probe
from rmbuild.errors import IncompatibleArtifact, SpecError
from tests.backends.rbln.conftest import make_project

COMPILE_ENTRY = Path(__file__).resolve().parents[3] / "rmbuild" / "tools" / "rbln_compile.py"
FLAGS = {"npu": "RBLN-CA25", "num_devices": 1, "batch_size": 1, "max_seq_len": 256}


class _Toolchain:
    def __init__(self, rebel: str = "0.12.0", optimum: str = "0.12.0") -> None:
        self.rebel, self.optimum = rebel, optimum

    def identity(self) -> dict[str, Any]:
        return {
            "packages": {"rebel-compiler": self.rebel, "optimum-rbln": self.optimum},
            "probe": {"rebel_version": self.rebel},
        }


def _fp(flags: dict[str, Any], tc: Any = None) -> dict[str, Any]:
    return plugin.RBLNBackend().fingerprint(None, flags, tc or _Toolchain())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"npu": "RBLN-CA12"}, "npu"),
        ({"num_devices": 2}, "num_devices"),
        ({"batch_size": 4}, "batch_size"),
        ({"max_seq_len": 128}, "max_seq_len"),
    ],
)
def test_fingerprint_differs_per_compile_setting(change: dict[str, Any], field: str) -> None:
    base, other = _fp(FLAGS), _fp({**FLAGS, **change})
    assert base[field] != other[field]
    assert {k for k in base if base[k] != other[k]} == {field}


@pytest.mark.parametrize(
    ("tc", "field"),
    [
        (_Toolchain(rebel="0.13.0"), "rebel_compiler"),
        (_Toolchain(optimum="0.12.1"), "optimum_rbln"),
    ],
)
def test_fingerprint_differs_per_sdk_version(tc: _Toolchain, field: str) -> None:
    # vllm-rbln PR#653: no compiler version in the key gave stale hits after upgrades.
    assert _fp(FLAGS)[field] != _fp(FLAGS, tc)[field]


def test_sku_spellings_are_one_sku() -> None:
    assert _fp({**FLAGS, "npu": "rbln-ca25"})["npu"] == "RBLN-CA25"
    assert probe.normalize_npu("RBLN-CA25-xyz") == "RBLN-CA25"


def test_deprecated_tensor_parallel_size_is_refused_with_the_new_name() -> None:
    with pytest.raises(SpecError) as err:
        _fp({**FLAGS, "tensor_parallel_size": 4})
    assert "tensor_parallel_size is the deprecated name of num_devices" in err.value.message
    assert err.value.hint == "set `num_devices: 4` in the target's flags instead"
    assert err.value.exit_code == 3


@pytest.mark.parametrize("npu", [None, "", "RBLN-XX99"])
def test_no_or_unknown_sku_is_refused(npu: Any) -> None:
    with pytest.raises(SpecError) as err:
        _fp({**FLAGS, "npu": npu})
    assert "RBLN-CA25" in (err.value.hint or "")


def test_tensor_parallel_size_exits_3_before_any_tool_runs(
    tmp_path: Path,
    store_dir: Path,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rmbuild's own interpreter as the toolchain: the refusal needs no SDK.
    spec = make_project(tmp_path / "proj", None, {"atom": {"tensor_parallel_size": 2}})
    counter = tmp_path / "compiles.txt"
    monkeypatch.setenv("STANDIN_REBEL_COUNTER", str(counter))
    monkeypatch.chdir(spec.parent)
    r = cli("compile", str(spec))
    r.assert_failure(3)
    assert "tensor_parallel_size is the deprecated name of num_devices" in r.err
    assert "num_devices: 2" in r.err
    assert not counter.exists()
    assert not (store_dir / "logs").exists() or not any((store_dir / "logs").iterdir())


# ----------------------------------------------------------------------------- loading


def _meta(npu: str = "RBLN-CA25", devices: int = 1, rebel: str = "0.12.0") -> dict[str, Any]:
    return {
        "target": "atom",
        "spec_file": "/proj/model.yaml",
        "fingerprint": {"npu": npu, "num_devices": devices, "rebel_compiler": rebel},
    }


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Set what ``rebel`` in the toolchain answers: host(count, sku, version)."""

    def set_host(count: int, sku: str = "RBLN-CA25", version: str = "0.12.0") -> None:
        answer = {"count": count, "names": [sku] * count, "rebel_version": version}
        monkeypatch.setattr(probe, "toolchain", lambda start=None: object())
        monkeypatch.setattr(probe, "sdk_devices", lambda tc: answer)

    return set_host


def test_another_sku_is_refused_naming_both(host) -> None:  # noqa: ANN001
    host(1, "RBLN-CA12")
    with pytest.raises(IncompatibleArtifact) as err:
        plugin.RBLNBackend().check_compatible(_meta())
    assert (
        err.value.message == "this RBLN artifact was compiled for RBLN-CA25; device 0 is RBLN-CA12"
    )
    assert "npu: RBLN-CA12" in (err.value.hint or "")
    assert err.value.exit_code == 6


def test_more_devices_than_present_is_refused_naming_both(host) -> None:  # noqa: ANN001
    host(1)
    with pytest.raises(IncompatibleArtifact) as err:
        plugin.RBLNBackend().check_compatible(_meta(devices=4))
    assert "needs 4 RBLN-CA25 device(s); found 1 RBLN device(s): 0: RBLN-CA25" in err.value.message
    assert "num_devices: 1" in (err.value.hint or "")


def test_another_compiler_version_is_refused(host) -> None:  # noqa: ANN001
    host(1, version="0.13.1")
    with pytest.raises(IncompatibleArtifact) as err:
        plugin.RBLNBackend().check_compatible(_meta(rebel="0.12.0"))
    assert "rebel-compiler 0.12.0" in err.value.message and "0.13.1" in err.value.message
    assert "--rebuild" in (err.value.hint or "")


def test_matching_host_passes(host) -> None:  # noqa: ANN001
    host(2)
    plugin.RBLNBackend().check_compatible(_meta(devices=2))


def test_without_the_toolchain_device_nodes_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(start: Any = None) -> Any:
        raise SpecError("no toolchain named 'rbln'")

    monkeypatch.setattr(probe, "toolchain", broken)
    from rmbuild.host import resources

    monkeypatch.setattr(resources, "rebellions", lambda: {"nodes": [], "devices": []})
    with pytest.raises(IncompatibleArtifact) as err:
        plugin.RBLNBackend().check_compatible(_meta())
    assert "found no RBLN device" in err.value.message


def test_vllm_command_follows_rbln_config() -> None:
    cfg = {"batch_size": 4, "max_seq_len": 8192, "kvcache_block_size": 4096}
    cmd = plugin.serve_command(cfg, "/srv/m")
    assert cmd == "vllm serve /srv/m --max-num-seqs 4 --max-model-len 8192 --block-size 4096"


def test_show_details_list_the_graphs_without_reading_them() -> None:
    cfg = {
        "cls_name": "RBLNLlamaForCausalLMConfig",
        "optimum_rbln_version": "0.12.0",
        "batch_size": 2,
        "max_seq_len": 256,
        "decoder_batch_sizes": [2, 1],
        "_compile_cfgs": [
            {"compiled_model_name": "prefill", "npu": "RBLN-CA25", "num_devices": 2},
            {"compiled_model_name": "decoder_batch_2", "npu": "RBLN-CA25", "num_devices": 2},
            {"compiled_model_name": "decoder_batch_1", "npu": "RBLN-CA25", "num_devices": 2},
        ],
    }
    import json

    def read(rel: str) -> bytes:
        assert rel == "rbln_config.json", f"read {rel}"
        return json.dumps(cfg).encode()

    details = plugin.RBLNBackend().artifact_details(read)
    assert details["rbln_files"] == ["decoder_batch_1.rbln", "decoder_batch_2.rbln", "prefill.rbln"]
    assert details["npu"] == ["RBLN-CA25"] and details["num_devices"] == [2]
    assert "--max-num-seqs 2 --max-model-len 256" in details["vllm_serve"]


def test_backend_is_listed_unavailable_with_the_reason(data_dir: Path, cli) -> None:  # noqa: ANN001
    r = cli("backends", "--json")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in r.json()}
    rbln = rows["rbln"]
    assert not rbln["available"]
    assert "toolchain rbln is not installed" in rbln["reason"]
    assert "Rebellions' own index" in rbln["install"]
    assert "rbln-ca25" in rbln["profiles"]


def test_compile_entry_without_rebel_says_where_it_comes_from(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    # rmbuild's own interpreter has no `rebel` (it comes only from Rebellions' index).
    done = subprocess.run(
        [sys.executable, str(COMPILE_ENTRY), "--model", str(model), "--output", str(tmp_path)]
        + ["--npu", "RBLN-CA25", "--num-devices", "1", "--batch-size", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "rebel-compiler comes only from Rebellions' own package index" in done.stdout
