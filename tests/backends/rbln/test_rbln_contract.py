"""RBLN end to end through the CLI against the real optimum-rbln 0.12.0 over a STAND-IN rebel
(conftest.py): compile, key, store, show, the compatibility refusals, and the load
path up to the device call. One compile is about five seconds (tiny-llama, 2 layers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backends.rbln.conftest import Built, RBLNProject

EXIT_SPEC = 3
EXIT_TOOL = 4
EXIT_INCOMPATIBLE = 6


def _compiles(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_compile_stores_the_rbln_layout_once_and_hits_after(built: Built, cli) -> None:  # noqa: ANN001
    artifact = built.artifacts["atom"]
    assert _compiles(built.counter) == 4  # prefill + decoder_batch_1, per target, by optimum-rbln

    info = cli("show", artifact, "--json").json()
    files = set(info["files"])
    for name in (
        "prefill.rbln",
        "decoder_batch_1.rbln",
        "rbln_config.json",
        "config.json",
        "tokenizer.json",
        "generation_config.json",
    ):
        assert name in files, (name, sorted(files))
    # The documented call, compile only, with the current argument names.
    argv = info["argv"]
    assert argv[argv.index("--npu") + 1] == "RBLN-CA25"
    assert argv[argv.index("--num-devices") + 1] == "1"
    log = Path(info["log"]).read_text()  # the entry prints the exact call it makes
    assert "'export': True, 'rbln_npu': 'RBLN-CA25', 'rbln_create_runtimes': False" in log
    assert "'rbln_num_devices': 1, 'rbln_batch_size': 1, 'rbln_max_seq_len': 256" in log
    fp = info["fingerprint"]
    assert fp["npu"] == "RBLN-CA25" and fp["num_devices"] == 1 and fp["batch_size"] == 1
    assert fp["rebel_compiler"] == "0.12.0" and fp["optimum_rbln"] == "0.12.0"
    assert info["toolchain"]["packages"]["transformers"] == "5.15.1"

    # rbln_config.json as optimum-rbln 0.12 writes it (real code, not the stand-in).
    details = info["details"]
    assert details["cls_name"] == "RBLNLlamaForCausalLMConfig"
    assert details["optimum_rbln_version"] == "0.12.0"
    assert details["npu"] == ["RBLN-CA25"] and details["num_devices"] == [1]
    assert details["compiled_models"] == ["prefill", "decoder_batch_1"]
    # vllm-rbln on the same folder, consistent with the compiled batch and length.
    assert "--max-num-seqs 1 --max-model-len 256 --block-size 256" in details["vllm_serve"]
    # rbln_num_devices reached optimum-rbln's compile configs of the other target.
    x2 = cli("show", built.artifacts["atom-x2"], "--json").json()
    assert x2["details"]["num_devices"] == [2] and x2["fingerprint"]["num_devices"] == 2

    from artifact_store import Store

    with Store(built.store) as store:
        folder = store.materialize(artifact)
    rbln_config = json.loads((folder / "rbln_config.json").read_text())
    assert rbln_config["max_seq_len"] == 256 and rbln_config["batch_size"] == 1
    assert {c["npu"] for c in rbln_config["_compile_cfgs"]} == {"RBLN-CA25"}

    again = cli("compile", str(built.spec), "--target", "atom", "--json")
    assert again.code == 0, again.err
    row = again.json()[0]
    assert row["hit"] and row["artifact"] == artifact
    assert _compiles(built.counter) == 4  # compiled once, never again


def test_run_refuses_another_sku_and_too_few_devices_before_loading(
    built: Built,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    artifact = built.artifacts["atom"]
    # CI: no NPU at all.
    none = cli("run", "--artifact", artifact, "-n", "2")
    none.assert_failure(EXIT_INCOMPATIBLE)
    assert "needs 1 RBLN-CA25 device(s); found no RBLN device" in none.err

    # An ATOM of another SKU: both named, and how to rebuild for it.
    monkeypatch.setenv("STANDIN_REBEL_DEVICES", "1")
    monkeypatch.setenv("STANDIN_REBEL_NPU", "RBLN-CA12")
    other = cli("run", "--artifact", artifact, "-n", "2")
    other.assert_failure(EXIT_INCOMPATIBLE)
    assert "compiled for RBLN-CA25; device 0 is RBLN-CA12" in other.err
    assert "npu: RBLN-CA12" in other.err
    assert _compiles(built.counter) == 4  # nothing recompiled on the refusals


def test_more_devices_than_present_is_refused_naming_both(
    built: Built,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STANDIN_REBEL_DEVICES", "1")
    monkeypatch.setenv("STANDIN_REBEL_NPU", "RBLN-CA25")
    run = cli("run", "--artifact", built.artifacts["atom-x2"], "-n", "2")
    run.assert_failure(EXIT_INCOMPATIBLE)
    assert "needs 2 RBLN-CA25 device(s); found 1 RBLN device(s): 0: RBLN-CA25" in run.err
    assert "num_devices: 1" in run.err


def test_load_path_reaches_the_device_call_without_compiling(
    built: Built,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STANDIN_REBEL_DEVICES", "1")
    monkeypatch.setenv("STANDIN_REBEL_NPU", "RBLN-CA25")
    run = cli("run", "--artifact", built.artifacts["atom"], "-n", "2")
    # The checks pass; optimum-rbln's from_pretrained(export=False, rbln_device=[0]) reads the
    # .rbln files and stops at rebel.Runtime, the device call the stand-in does not imitate.
    # A load refusal: exit 6, as on every other backend (not 4, "a tool failed").
    run.assert_failure(EXIT_INCOMPATIBLE)
    assert "optimum-rbln could not load the artifact on RBLN device(s) [0]" in run.err
    assert "Failed to create RBLN runtime" in run.err
    assert "stand-in rebel: the device runtime is not imitated" in run.err
    assert _compiles(built.counter) == 4  # export=False: never a compile on load


def test_a_licence_error_of_the_compiler_is_shown_verbatim_with_its_log(
    rbln_project: RBLNProject,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = "RBLN_LICENSE_ERROR: no valid license for rebel-compiler (code 0x2a, contact support)"
    monkeypatch.setenv("STANDIN_REBEL_FAIL", message)
    r = cli("compile", str(rbln_project.spec), "--target", "atom")
    r.assert_failure(EXIT_TOOL)
    assert message in r.err
    assert "full log:" in r.err
    log = Path(r.err.split("full log:")[1].split()[0])
    assert message in log.read_text()
    assert cli("ls", "--json").json() == []  # a failure is never cached
