"""``compile --all`` with a target that cannot be built here, and prerequisites named at once.

The project has two targets of the stand-in compiler and one (``blocked``) whose toolchain is a
provisioned one (``vendor``) that needs a system tool no machine has: before its install the
target lacks both, after it only the tool. Nothing real is installed: the vendor lock is empty.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

VENDOR = """\
name: vendor
description: a provisioned toolchain whose compiles need a cross gcc
lock: vendor.lock
system_tools:
  - name: cross-gcc
    check: [no-such-cross-gcc-xyz, --version]
    debian: gcc-cross-for-tests
"""


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.fixture
def blocked(project: Project, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Targets a, blocked, z (in that order): the blocked one is in the middle."""
    folder = project.root / "profiles" / "toolchains"
    (folder / "vendor.yaml").write_text(VENDOR)
    (folder / "vendor.lock").write_text("# nothing pinned: a bare venv\n")
    vendor = (
        project.fake_profile()
        .replace("name: fake-compile", "name: vendor-compile\nresource: npu")
        .replace("toolchain: fake", "toolchain: vendor")
    )
    project.write_profile("vendor-compile", vendor)
    counter = json.dumps(str(project.root / "runs.txt"))
    project.write_spec(
        "name: tiny\nsource: {path: model, format: hf}\ntargets:\n"
        f"  a: {{profile: fake-compile, flags: {{counter: {counter}}}}}\n"
        f"  blocked: {{profile: vendor-compile, flags: {{counter: {counter}}}}}\n"
        f"  z: {{profile: fake-compile, flags: {{level: 2, counter: {counter}}}}}\n"
    )
    monkeypatch.chdir(project.root)  # `toolchain install` finds toolchains from here
    return project


def _install_vendor(cli) -> None:  # noqa: ANN001
    r = cli("toolchain", "install", "vendor", "--without-system-tools")
    assert r.code == 0, r.err


# ----------------------------------------------------------------------------- --all


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_all_builds_every_target_past_one_that_cannot_be_built(
    blocked: Project, cli, jobs: str
) -> None:  # noqa: ANN001
    r = cli("compile", str(blocked.spec), "--all", "-j", jobs)
    assert r.code == 0, r.err  # a skip is reported, not a failure
    assert "tiny:a -> " in r.out and "tiny:z -> " in r.out  # the result lines of both
    assert "3 targets in" in r.err and "2 built, 0 cached, 1 skipped, 0 failed" in r.err
    assert "blocked: skipped, exit 7" in r.err
    assert "system tool cross-gcc not found -> sudo apt-get install -y gcc-cross-for-tests" in (
        r.err
    )
    assert "toolchain vendor: not installed -> rmbuild toolchain install vendor" in r.err
    assert _runs(blocked.root / "runs.txt") == 2  # a and z; the blocked tool never ran
    assert {row["target"] for row in cli("ls", "--json").json()} == {"a", "z"}
    assert cli("ls", "--failed", "--json").json() == []  # a skip records no failure

    again = cli("compile", str(blocked.spec), "--all", "-j", jobs)
    assert again.code == 0 and "0 built, 2 cached, 1 skipped, 0 failed" in again.err


def test_strict_fails_on_a_skipped_target_after_building_the_rest(blocked: Project, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(blocked.spec), "--all", "--strict")
    r.assert_failure(7)
    assert "tiny:a -> " in r.out and "tiny:z -> " in r.out
    assert "skipped (fails with --strict)" in r.err
    assert "tiny:blocked cannot be built here" in r.err


def test_a_failure_keeps_going_by_default_and_fail_fast_stops(blocked: Project, cli) -> None:  # noqa: ANN001
    counter = blocked.root / "runs.txt"
    text = blocked.spec.read_text().replace(
        "a: {profile: fake-compile, flags: {", "a: {profile: fake-compile, flags: {mode: fail, "
    )
    blocked.write_spec(text)
    r = cli("compile", str(blocked.spec), "--all")
    r.assert_failure(4)  # the failed target's exit status, after the others were built
    assert "tiny:z -> " in r.out
    assert "0 built" not in r.err and "1 built, 0 cached, 1 skipped, 1 failed" in r.err
    assert "a: failed, exit 4" in r.err and "failed on purpose" in r.err
    assert _runs(counter) == 2
    as_json = cli("compile", str(blocked.spec), "--all", "--json")
    as_json.assert_failure(4)
    # One JSON document (the rows, the failure's error in its row), no error object after it.
    assert [row["status"] for row in as_json.json()] == ["failed", "skipped", "hit"]
    assert as_json.json()[0]["error"]["exit_code"] == 4
    assert _runs(counter) == 3

    blocked.write_spec(text.replace("level: 2", "level: 3"))  # z misses again
    r = cli("compile", str(blocked.spec), "--all", "--fail-fast")
    r.assert_failure(4)
    assert "tiny:z" not in r.out and "not tried (--fail-fast): blocked, z" in r.err
    assert _runs(counter) == 4  # only a ran (and failed)


def test_all_json_has_a_row_per_target_with_its_status(blocked: Project, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(blocked.spec), "--all", "--json")
    assert r.code == 0, r.err
    rows = {row["target"]: row for row in r.json()}
    assert [row["target"] for row in r.json()] == ["a", "blocked", "z"]
    assert rows["a"]["status"] == "built" and rows["a"]["artifact"]
    skipped = rows["blocked"]
    assert skipped["status"] == "skipped" and skipped["artifact"] is None
    assert skipped["error"]["exit_code"] == 7 and skipped["error"]["error"] == "backend-unavailable"
    # Both prerequisites, in the order to get them: the system tool before the install.
    assert skipped["error"]["hint"] == (
        "sudo apt-get install -y gcc-cross-for-tests; rmbuild toolchain install vendor"
    )
    again = cli("compile", str(blocked.spec), "--all", "--json").json()
    assert [row["status"] for row in again] == ["hit", "skipped", "hit"]


def test_all_with_a_remote_pushes_what_it_built(blocked: Project, cli, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    url = f"file://{tmp_path / 'team'}"
    r = cli("compile", str(blocked.spec), "--all", "--remote", url, "--json")
    assert r.code == 0, r.err
    built = {row["artifact"] for row in r.json() if row["artifact"]}
    listing = cli("ls", "--remote", url, "--json")
    assert listing.code == 0, listing.err
    assert {row["id"] for row in listing.json()} == built and len(built) == 2


# ----------------------------------------------------------------------------- prerequisites


def test_compile_names_every_missing_prerequisite_at_once(blocked: Project, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(blocked.spec), "-t", "blocked")
    r.assert_failure(7)
    assert "tiny:blocked cannot be built here: 2 prerequisite(s) missing" in r.err
    assert "system tool cross-gcc not found" in r.err and "toolchain vendor: not installed" in r.err
    assert (
        "hint: sudo apt-get install -y gcc-cross-for-tests; rmbuild toolchain install vendor"
        in (r.err)
    )


def test_a_missing_system_tool_stops_the_compile_before_the_tool_runs(
    blocked: Project, cli
) -> None:  # noqa: ANN001
    _install_vendor(cli)
    r = cli("compile", str(blocked.spec), "-t", "blocked")
    r.assert_failure(7)  # not "the tool failed" (exit 4) after it ran
    assert "system tool cross-gcc not found -> sudo apt-get install -y gcc-cross-for-tests" in (
        r.err
    )
    assert "toolchain vendor" not in r.err  # installed: only what is still missing
    assert _runs(blocked.root / "runs.txt") == 0
    assert cli("ls", "--failed", "--json").json() == []  # a prerequisite is no failed build


def test_toolchain_install_checks_system_tools_before_downloading(
    blocked: Project, cli, data_dir: Path
) -> None:  # noqa: ANN001
    r = cli("toolchain", "install", "vendor")
    r.assert_failure(7)
    assert "cross-gcc" in r.err and "sudo apt-get install -y gcc-cross-for-tests" in r.err
    assert "nothing was downloaded" in r.err and "--without-system-tools" in r.err
    assert not (data_dir / "toolchains" / "vendor").exists()
    assert not (data_dir / "toolchains" / ".partial-vendor").exists()
    _install_vendor(cli)  # the escape hatch installs, and still warns
    assert (data_dir / "toolchains" / "vendor").is_dir()
    warned = cli("toolchain", "install", "vendor")  # reused: no refusal, the warning stays
    assert warned.code == 0 and "needs the system tool cross-gcc" in warned.err


def test_plan_and_explain_list_every_missing_prerequisite_once(blocked: Project, cli) -> None:  # noqa: ANN001
    plan = cli("compile", str(blocked.spec), "-t", "blocked", "--plan", "--json")
    assert plan.code == 0, plan.err
    (target,) = plan.json()["targets"]
    (stage,) = target["stages"]
    assert stage["action"] == "blocked" and target["status"] == "blocked"
    assert [g["what"] for g in stage["blocked"]] == [
        "system tool cross-gcc not found",
        "toolchain vendor: not installed",
    ]  # each once: not also as "toolchain 'vendor' is not installed"
    assert stage["reason"] == (
        "cannot be built here: system tool cross-gcc not found; toolchain vendor: not installed"
    )
    assert not any("building it works" in note for note in target["notes"])
    text = cli("compile", str(blocked.spec), "-t", "blocked", "--plan")
    assert text.out.count("vendor: not installed") == 1 and "why:" not in text.out
    explain = cli("compile", str(blocked.spec), "-t", "npu", "--explain", "--json")
    (row,) = explain.json()["candidates"]
    assert [g["install"] for g in row["missing"]] == [
        "sudo apt-get install -y gcc-cross-for-tests",
        "rmbuild toolchain install vendor",
    ]
