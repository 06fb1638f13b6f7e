"""``rmbuild why`` and the plan's ``reason``: key factors vs the nearest entry."""

from __future__ import annotations

import copy

from rmbuild.planning.why import diff, summary

STORED = {
    "key_version": 2,
    "inputs": {"model": "a" * 64},
    "stage": "compile",
    "backend": "onnxruntime",
    "profile": "onnxruntime-cpu",
    "flags": {"opt_level": "extended"},
    "argv": ["tool", "--level", "extended"],
    "configs": {},
    "tool": {"name": "tool", "version": "1.0"},
    "toolchain": {"name": "onnx", "python": "3.11.9", "packages": {"onnxruntime": "1.32.0"}},
    "fingerprint": {},
    "carry": [],
    "env": {},
}


def test_a_package_upgrade_reads_as_one_line() -> None:
    planned = copy.deepcopy(STORED)
    planned["toolchain"]["packages"]["onnxruntime"] = "1.33.0"
    same, lines = diff(planned, STORED)
    assert lines == ["onnxruntime 1.32.0 → 1.33.0"]
    text = summary(same, lines)
    assert text.startswith("same graph, flags, tool, host facts and env; ")
    assert text.endswith("onnxruntime 1.32.0 → 1.33.0")


def test_flag_env_fingerprint_and_key_version() -> None:
    planned = copy.deepcopy(STORED)
    planned["flags"]["opt_level"] = "all"
    planned["argv"] = ["tool", "--level", "all"]
    planned["env"] = {"OMP_NUM_THREADS": "4"}
    planned["fingerprint"] = {"cpu_isa": "avx512"}
    planned["key_version"] = 3
    _, lines = diff(planned, STORED)
    assert "flag opt_level: extended → all" in lines
    assert "env OMP_NUM_THREADS: (absent) → 4" in lines
    assert "host cpu_isa: (absent) → avx512" in lines
    assert any(line.startswith("key version 2 → 3") for line in lines)
    # The argv follows from the flag: no second line for it.
    assert not any(line.startswith("command line differs") for line in lines)
    planned = copy.deepcopy(STORED)
    planned["argv"] = ["tool", "--new-template"]
    assert diff(planned, STORED)[1] == [
        "command line differs (the template or a flag's rendering changed)"
    ]


def test_identical_factors() -> None:
    same, lines = diff(STORED, STORED)
    assert lines == [] and "flags" in same


def test_why_cli_names_the_changed_flag(cli, project) -> None:
    project.set_flags(level=1)
    assert cli("compile", str(project.spec)).code == 0
    project.set_flags(level=2)
    result = cli("why", str(project.spec), "--target", "fake")
    assert result.code == 0, result.err
    assert "tiny:fake (fake-compile): build" in result.out
    assert "same graph" in result.out
    assert "flag level: 1 → 2" in result.out
    # The same reason in the plan JSON.
    plan = cli("compile", str(project.spec), "--plan", "--json").json()
    assert "flag level: 1 → 2" in plan["targets"][0]["stages"][0]["reason"]


def test_why_cli_names_changed_weights(cli, project) -> None:
    assert cli("compile", str(project.spec)).code == 0
    (project.model / "weights.bin").write_bytes(b"\x07" * 128)
    result = cli("why", str(project.spec), "-t", "fake", "--json")
    assert result.code == 0, result.err
    reason = result.json()["stages"][0]["reason"]
    assert "model files (graph/weights) changed" in reason
    assert "same flags" in reason


def test_why_cli_hit(cli, project) -> None:
    assert cli("compile", str(project.spec)).code == 0
    result = cli("why", str(project.spec), "-t", "fake")
    assert result.code == 0, result.err
    assert "stored: cache hit" in result.out


def test_why_unknown_target_is_a_usage_error(cli, project) -> None:
    cli("why", str(project.spec), "-t", "nope").assert_failure(2)


def test_a_key_env_change_shows_digests_never_values() -> None:
    from rmbuild.toolrun.toolenv import secret_digest

    # A key stored before key_env values were digests (key version 2) holds the token itself:
    # `why` against it shows that value as its digest as well.
    stored = copy.deepcopy(STORED)
    stored["env"] = {"HF_TOKEN": "hf_oldsecrettoken"}
    planned = copy.deepcopy(STORED)
    planned["env"] = {"HF_TOKEN": secret_digest("hf_newsecrettoken")}
    planned["key_version"] = 3
    _, lines = diff(planned, stored)
    (line,) = [line for line in lines if line.startswith("env HF_TOKEN")]
    assert "secrettoken" not in line
    old, new = secret_digest("hf_oldsecrettoken")[:19], secret_digest("hf_newsecrettoken")[:19]
    assert line == f"env HF_TOKEN: {old} → {new}"
    # A fixed value (written in a profile or toolchain file) is still shown as it is.
    planned["env"] = {"OMP_NUM_THREADS": "4"}
    assert "env OMP_NUM_THREADS: (absent) → 4" in diff(planned, STORED)[1]
