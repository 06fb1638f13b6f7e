"""``rmbuild toolchain install|ls|rm|path``, on a bare provisioned toolchain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = """\
name: tiny
description: a bare venv (empty lock)
lock: tiny.lock
packages: []
"""


@pytest.fixture
def tiny(project, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: ANN001
    folder = project.root / "profiles" / "toolchains"
    (folder / "tiny.yaml").write_text(TINY)
    (folder / "tiny.lock").write_text("# nothing pinned\n")
    monkeypatch.chdir(project.root)  # the CLI looks for toolchains from the current folder
    return project.root


def test_install_ls_path_rm(tiny: Path, data_dir: Path, cli) -> None:  # noqa: ANN001
    r = cli("toolchain", "path", "tiny")
    r.assert_failure(7)
    assert "rmbuild toolchain install tiny" in r.err

    rows = {row["name"]: row for row in json.loads(cli("toolchain", "ls", "--json").out)}
    assert (
        not rows["tiny"]["installed"]
        and rows["tiny"]["install"] == "rmbuild toolchain install tiny"
    )
    assert rows["furiosa"]["needed_by"] == ["furiosa-rngd"]  # the built-in, not installed here

    r = cli("toolchain", "install", "tiny", "--json")
    assert r.code == 0, r.err
    done = json.loads(r.out)
    assert done["path"] == str(data_dir / "toolchains" / "tiny") and not done["reused"]
    assert json.loads(cli("toolchain", "install", "tiny", "--json").out)["reused"]

    r = cli("toolchain", "path", "tiny")
    assert r.code == 0 and r.out.strip() == str(data_dir / "toolchains" / "tiny")
    rows = {row["name"]: row for row in json.loads(cli("toolchain", "ls", "--json").out)}
    assert rows["tiny"]["installed"] and len(rows["tiny"]["identity"]) == 12
    assert "tiny" in cli("toolchain", "ls").out

    assert "removed" in cli("toolchain", "rm", "tiny").out
    assert not (data_dir / "toolchains" / "tiny").exists()


def test_unknown_toolchain_is_a_spec_error(tiny: Path, cli) -> None:  # noqa: ANN001
    r = cli("toolchain", "install", "nope")
    r.assert_failure(3)
    assert "no toolchain named 'nope'" in r.err


def test_a_main_env_toolchain_is_not_installable(tiny: Path, cli) -> None:  # noqa: ANN001
    r = cli("toolchain", "install", "fake")
    r.assert_failure(3)
    assert "not provisioned by rmbuild" in r.err


def test_ls_and_info_agree_on_what_a_toolchain_lacks(tiny: Path, cli) -> None:  # noqa: ANN001
    # A toolchain of rmbuild's own environment whose package is not installed, and one whose
    # system tool is missing: `ls` called both "installed" while `info` listed the package
    # as not installed. Both now ask rmbuild.planning.policy.toolchain_gaps.
    folder = tiny / "profiles" / "toolchains"
    (folder / "nopkg.yaml").write_text("name: nopkg\npython: null\npackages: [no-such-pkg-xyz]\n")
    (folder / "notool.yaml").write_text(
        "name: notool\npython: null\npackages: []\nsystem_tools:\n"
        "  - name: vendorc\n    check: [no-such-vendorc-xyz, --help]\n    hint: get vendorc\n"
    )
    rows = {row["name"]: row for row in cli("toolchain", "ls", "--json").json()}
    assert not rows["nopkg"]["installed"] and not rows["nopkg"]["ready"]
    assert [gap["what"] for gap in rows["nopkg"]["missing"]] == [
        "toolchain nopkg: no-such-pkg-xyz not installed"
    ]
    assert rows["notool"]["installed"] and not rows["notool"]["ready"]
    assert rows["notool"]["missing"] == [
        {"what": "system tool vendorc not found", "install": "get vendorc"}
    ]
    assert rows["fake"]["ready"] and rows["fake"]["missing"] == []
    info = {tc["name"]: tc for tc in cli("info", "--json").json()["toolchains"]}
    for name in ("nopkg", "notool", "fake", "tiny", "furiosa"):
        assert info[name]["missing"] == rows[name]["missing"], name
        assert info[name]["ready"] == rows[name]["ready"], name
    table = cli("toolchain", "ls").out
    line = next(line for line in table.splitlines() if line.split()[0] == "notool")
    assert "installed" not in line and "vendorc not found" in line
    text = cli("info").out
    assert "missing: no-such-pkg-xyz not installed" in text
    assert "missing: system tool vendorc not found -> get vendorc" in text
