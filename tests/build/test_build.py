"""Builds through the CLI on the stand-in compiler: caching, keyed vs runtime-only flags, literal
arguments. (Key inputs one by one are in test_keys.py; this checks what a user sees.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project


def _compile(cli, project: Project) -> dict:  # noqa: ANN001
    r = cli("compile", str(project.spec), "--json")
    assert r.code == 0, r.err
    (result,) = r.json()
    return result


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _argv_of(artifact: str) -> list[str]:
    from rmbuild.storage.store import open_store

    with open_store() as store:
        tree = store.materialize(artifact)
        return json.loads((tree / "argv.json").read_text())


def test_second_compile_is_a_hit_and_runs_nothing(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    first = _compile(cli, project)
    second = cli("compile", str(project.spec))
    assert second.code == 0
    assert "cache hit" in second.err and "cached, no tool ran" in second.out
    assert first["hit"] is False and _runs(counter) == 1
    listing = cli("ls", "--json").json()
    assert [a["id"] for a in listing] == [first["artifact"]]
    assert listing[0]["model"] == "tiny" and listing[0]["target"] == "fake"
    assert not list((project.store / "tmp").iterdir())


def test_runtime_only_flag_does_not_change_the_artifact(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter), threads=1)
    first = _compile(cli, project)
    project.set_flags(counter=str(counter), threads=8)
    second = _compile(cli, project)
    assert second["hit"] is True
    assert second["artifact"] == first["artifact"]
    assert _runs(counter) == 1


def test_keyed_flag_changes_the_artifact(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter), level=1)
    first = _compile(cli, project)
    project.set_flags(counter=str(counter), level=2)
    second = _compile(cli, project)
    assert second["hit"] is False
    assert second["artifact"] != first["artifact"]
    assert _runs(counter) == 2
    assert len(cli("ls", "--json").json()) == 2


def test_model_content_changes_the_artifact_but_its_folder_name_does_not(  # noqa: ANN001
    project: Project, cli
) -> None:
    first = _compile(cli, project)
    (project.model / "weights.bin").write_bytes(b"other weights")
    second = _compile(cli, project)
    assert second["artifact"] != first["artifact"]
    # Moving the same content to another folder name is still a hit.
    project.model.rename(project.root / "moved")
    project.write_spec(project.spec_text(source="moved"))
    third = _compile(cli, project)
    assert third["hit"] is True and third["artifact"] == second["artifact"]


METACHARS = "x; touch {pwned} && echo $(id) | cat `id` > {pwned}2 & #"


@pytest.mark.parametrize("value", [METACHARS, "# looks like a comment", "  spaced  ", "$HOME"])
def test_flag_value_reaches_the_tool_as_one_literal_argument(
    project: Project,
    cli,  # noqa: ANN001
    tmp_path: Path,
    value: str,
) -> None:
    pwned = tmp_path / "pwned"
    value = value.format(pwned=pwned)
    project.set_flags(name=value)
    result = _compile(cli, project)
    argv = _argv_of(result["artifact"])
    assert argv[argv.index("--name") + 1] == value
    assert argv[-2:] == ["--name", value]  # nothing split off or shifted
    assert not list(tmp_path.rglob("pwned*"))
    shown = cli("show", result["artifact"][:8], "--json")
    assert shown.code == 0 and value in shown.json()["argv"]


def test_model_folder_with_shell_metacharacters(
    project: Project,
    cli,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(pwned))  # a shell would expand it; a folder name cannot hold /
    name = "m; touch $PWNED $(id) | cat"
    project.model.rename(project.root / name)
    project.write_spec(project.spec_text(source=name))
    result = _compile(cli, project)
    argv = _argv_of(result["artifact"])
    assert argv[argv.index("--input") + 1] == str(project.root / name)
    assert not pwned.exists()


def test_model_name_with_shell_metacharacters_is_rejected(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text(name=json.dumps("x; touch pwned && echo $(id)")))
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert f"{project.spec}:1: field 'name'" in r.err


def test_library_compile_spec(project: Project) -> None:
    from rmbuild.build import compile_spec
    from rmbuild.storage.store import open_store

    with open_store() as store:
        (result,) = compile_spec(project.spec, ["fake"], store=store)
        assert result.hit is False and len(result.stages) == 1
        assert result.artifact.metadata["argv"][0] == str(project.fake)
        assert result.artifact.metadata["runtime_flags"] == {"threads": 0}
        assert "threads" not in result.artifact.metadata["action_key"]["flags"]
        (again,) = compile_spec(project.spec, ["fake"], store=store)
        assert again.hit is True and again.artifact.key == result.artifact.key


def _two_stage_project(project: Project, counter: Path, *, jobs_targets: int = 2) -> None:
    """fake-compile (hf -> fake-bin) feeding fake-second (fake-bin -> fake-bin2) per target."""
    second = project.fake_profile().replace("name: fake-compile", "name: fake-second")
    second = second.replace("input_format: hf", "input_format: fake-bin")
    second = second.replace("output_format: fake-bin", "output_format: fake-bin2")
    project.write_profile("fake-second", second + "depends_on: fake-compile\n")
    targets = "\n".join(
        f"  t{i}:\n    profile: fake-second\n    flags: {{level: {i + 10}}}\n"
        f"    stages:\n      fake-compile:\n        flags: {{counter: {json.dumps(str(counter))},"
        f" sleep: 1}}"
        for i in range(jobs_targets)
    )
    project.write_spec(f"name: tiny\nsource: {{path: model}}\ntargets:\n{targets}\n")


def test_parallel_targets_share_the_upstream_stage(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    _two_stage_project(project, counter)
    r = cli("compile", str(project.spec), "--all", "-j", "2", "--json")
    assert r.code == 0, r.err
    results = r.json()
    assert [x["target"] for x in results] == ["t0", "t1"]
    assert results[0]["stages"][0]["key"] == results[1]["stages"][0]["key"]
    assert results[0]["artifact"] != results[1]["artifact"]
    # Both workers needed the shared stage at once; the tool ran once for it.
    assert _runs(counter) == 1
    assert sum(x["stages"][0]["hit"] for x in results) == 1


def test_parallel_failure_is_reported_with_its_tool(project: Project, cli) -> None:  # noqa: ANN001
    _two_stage_project(project, project.root / "runs.txt")
    text = project.spec.read_text().replace("flags: {level: 11}", "flags: {level: 11, mode: fail}")
    project.write_spec(text)
    r = cli("compile", str(project.spec), "--all", "-j", "2")
    r.assert_failure(4)
    assert "fake-compiler" in r.err and "exit code" in r.err
    listing = {a["target"] for a in cli("ls", "--json").json()}
    assert "t0" in listing  # the other target still finished


def test_target_depends_on_inserts_a_stage(project: Project, cli) -> None:  # noqa: ANN001
    _two_stage_project(project, project.root / "runs.txt", jobs_targets=1)
    middle = project.fake_profile().replace("name: fake-compile", "name: fake-middle")
    middle = middle.replace("input_format: hf", "input_format: fake-bin")
    project.write_profile("fake-middle", middle + "depends_on: fake-compile\n")
    project.write_spec(project.spec.read_text() + "    depends_on: fake-middle\n")
    r = cli("compile", str(project.spec), "--json")
    assert r.code == 0, r.err
    assert [s["profile"] for s in r.json()[0]["stages"]] == [
        "fake-compile",
        "fake-middle",
        "fake-second",
    ]


def test_target_depends_on_with_the_wrong_format_is_a_spec_error(project: Project, cli) -> None:  # noqa: ANN001
    _two_stage_project(project, project.root / "runs.txt", jobs_targets=1)
    # fake-second takes fake-bin; making it depend on itself-like fake-second (fake-bin2) fails.
    project.write_spec(project.spec.read_text() + "    depends_on: fake-second\n")
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert "cycle" in r.err or "takes" in r.err


# ---- A hit found only under the key's lock records its use too ------------------


def _two_targets(project: Project, counter: Path) -> None:
    """Targets `fake` and `fake2`: same profile and flags, so one key, one artifact."""
    text = project.spec_text({"counter": str(counter)})
    text += "  fake2:\n    profile: fake-compile\n    flags:\n"
    text += f"      counter: {json.dumps(str(counter))}\n"
    project.write_spec(text)


def test_a_hit_found_while_waiting_for_the_lock_records_its_use(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic form of `compile --all -j 2`: the record appears while we wait."""
    from rmbuild import build as build_mod
    from rmbuild.build import running
    from rmbuild.storage.store import open_store

    counter = project.root / "runs.txt"
    _two_targets(project, counter)
    with open_store() as store:
        (first,) = build_mod.compile_spec(project.spec, ["fake"], store=store)
        real = running.usable
        calls = []

        def not_yet_then_real(store, key_hex):  # noqa: ANN001, ANN202
            calls.append(key_hex)
            # Before the lock: "not built yet"; under the lock: the other job's record.
            return (None, None) if len(calls) == 1 else real(store, key_hex)

        monkeypatch.setattr(running, "usable", not_yet_then_real)
        (second,) = build_mod.compile_spec(project.spec, ["fake2"], store=store)
        assert len(calls) == 2 and second.hit and second.artifact.key == first.artifact.key
        assert [r.key for r in store.list(target="fake2")] == [first.artifact.key]
        assert set(store.get(first.artifact.key).uses) == {("tiny", "fake"), ("tiny", "fake2")}
    assert _runs(counter) == 1


def test_parallel_compile_records_every_target_an_artifact_serves(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    _two_targets(project, counter)
    r = cli("compile", str(project.spec), "--all", "-j", "2", "--json")
    assert r.code == 0, r.err
    keys = {res["artifact"] for res in r.json()}
    assert len(keys) == 1 and _runs(counter) == 1
    for target in ("fake", "fake2"):
        listed = cli("ls", "--target", target, "--json").json()
        assert [a["id"] for a in listed] == list(keys), target


def test_rebuild_runs_a_shared_stage_once_per_compile(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    _two_targets(project, counter)
    assert cli("compile", str(project.spec), "--all").code == 0
    assert _runs(counter) == 1
    forced = cli("compile", str(project.spec), "--all", "--rebuild", "--json")
    assert forced.code == 0, forced.err
    # Both targets share the key: the tool ran again once, the second target hit it.
    assert _runs(counter) == 2
    assert [res["hit"] for res in forced.json()] == [False, True]


def test_tool_output_linking_out_of_its_folder_is_a_tool_error(project: Project, cli) -> None:  # noqa: ANN001
    """A link the tool left pointing out of its output is refused (exit 4),
    the tool named, nothing stored."""
    import stat
    import sys

    tool = project.root / "leaky-compiler"
    tool.write_text(
        f"#!{sys.executable}\n"
        "import os, subprocess, sys\n"
        f"rc = subprocess.call([{str(project.fake)!r}, *sys.argv[1:]])\n"
        "out = sys.argv[sys.argv.index('--out') + 1]\n"
        "os.symlink('/etc/hostname', os.path.join(out, 'leak'))\n"
        "sys.exit(rc)\n",
        encoding="utf-8",
    )
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    project.write_profile("fake-compile", project.fake_profile(tool=str(tool)))
    r = cli("compile", str(project.spec))
    r.assert_failure(4)
    assert "left an output the store refuses" in r.err and "leak" in r.err
    assert cli("ls", "--json").json() == []


# ---- a hit pushes what the remote lacks, in the library as in the CLI -----------------------


def test_library_compile_spec_with_a_remote_pushes_a_hit_the_remote_lacks(
    project: Project, tmp_path: Path
) -> None:
    from artifact_store.remote import Remote
    from rmbuild.build import compile_spec
    from rmbuild.storage.store import open_store

    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    remote = Remote(f"file://{tmp_path / 'team'}")
    with open_store() as store:
        (built,) = compile_spec(project.spec, ["fake"], store=store)  # no remote yet
        assert remote.get(built.artifact.key) is None
        (hit,) = compile_spec(project.spec, ["fake"], store=store, remote=remote)
    assert hit.hit and _runs(counter) == 1
    entry = remote.get(built.artifact.key)
    assert entry is not None and entry.manifest_digest == built.artifact.manifest_digest
