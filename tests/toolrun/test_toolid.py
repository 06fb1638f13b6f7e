"""A tool's identity in the key: its content, interpreter, declared files, version output;
the environment part of the key; tool.uses."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rmbuild.build import action_key, plan
from rmbuild.declare.spec import load_model_spec
from rmbuild.errors import SpecError, ToolError, ToolNotFound

if TYPE_CHECKING:
    from conftest import Project

INPUTS = {"model": "0" * 64}


def _key(project: Project, hasher=None) -> str:  # noqa: ANN001
    spec = load_model_spec(project.spec)
    (stage,) = plan(spec, "fake")
    return action_key(stage, INPUTS, spec.root, hasher=hasher).compute()


def _tool_dict(project: Project) -> dict:
    spec = load_model_spec(project.spec)
    (stage,) = plan(spec, "fake")
    return action_key(stage, INPUTS, spec.root).tool


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _add_to_tool(project: Project, yaml_lines: str) -> None:
    text = project.fake_profile().replace("template:", yaml_lines + "template:", 1)
    project.write_profile("fake-compile", text)


# ----------------------------------------------------------------------------- the executable


def test_editing_the_tool_in_place_changes_the_key(project: Project) -> None:
    before = _key(project)
    with open(project.fake, "a", encoding="utf-8") as f:
        f.write("# a vendor hotfix, same path, same name\n")
    assert _key(project) != before


def test_another_binary_at_the_same_path_changes_the_key(project: Project, tmp_path: Path) -> None:
    before = _key(project)
    other = _executable(tmp_path / "other", project.fake.read_text() + "\nX = 1\n")
    os.replace(other, project.fake)  # a reinstall: new inode, same path
    assert _key(project) != before


def test_the_key_does_not_depend_on_where_the_tool_lives(project: Project, tmp_path: Path) -> None:
    # Content, not path: the same compiler installed elsewhere keeps its digest.
    first = _tool_dict(project)
    copy = _executable(tmp_path / "elsewhere" / "fake-compiler", project.fake.read_text())
    project.write_profile("fake-compile", project.fake_profile(tool=str(copy)))
    second = _tool_dict(project)
    assert first["sha256"] == second["sha256"]
    assert first["interpreters_sha256"] == second["interpreters_sha256"]


def test_a_scripts_interpreter_is_part_of_its_identity(project: Project, tmp_path: Path) -> None:
    interp = _executable(tmp_path / "interp" / "runpy", f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    body = project.fake.read_text().split("\n", 1)[1]
    tool = _executable(tmp_path / "bin2" / "compiler", f"#!{interp}\n{body}")
    project.write_profile("fake-compile", project.fake_profile(tool=str(tool)))
    ident = _tool_dict(project)
    # runpy and, under it, /bin/sh: each level of #! is hashed.
    assert len(ident["interpreters_sha256"]) == 2
    before = _key(project)
    interp.write_text(f'#!/bin/sh\n# upgraded\nexec {sys.executable} "$@"\n')
    assert _key(project) != before


def test_env_shebang_is_resolved_on_the_tools_path(project: Project, tmp_path: Path) -> None:
    body = project.fake.read_text().split("\n", 1)[1]
    tool = _executable(tmp_path / "bin3" / "compiler", f"#!/usr/bin/env python3\n{body}")
    project.write_profile("fake-compile", project.fake_profile(tool=str(tool)))
    ident = _tool_dict(project)
    # python3 as env finds it on the tool's PATH: the toolchain's bin dir first.
    toolchain_python = Path(sys.executable).parent / "python3"
    expected = toolchain_python if toolchain_python.exists() else None
    if expected is not None:
        from rmbuild.toolrun.toolid import local_hasher

        assert ident["interpreters_sha256"] == [local_hasher([expected])[expected]]


def test_store_hasher_is_used_for_the_tool(project: Project, store_dir: Path) -> None:
    from rmbuild.storage.store import open_store

    seen: list[Path] = []
    with open_store() as store:

        def hasher(paths: list[Path]) -> dict[Path, str]:
            seen.extend(paths)
            return store.hash_files(paths)

        with_store = _key(project, hasher)
    assert project.fake in seen  # digests go through the stat cache
    assert with_store == _key(project)  # same digests either way


# ----------------------------------------------------------------------------- declared identity


def test_declared_extra_file_changes_the_key(project: Project, tmp_path: Path) -> None:
    lib = tmp_path / "vendor" / "lib" / "libvendor.so.1"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF v1")
    _add_to_tool(project, f"  files: [{str(tmp_path / 'vendor' / 'lib' / '*.so*')!r}]\n")
    ident = _tool_dict(project)
    assert list(ident["files"]) == [str(lib)]
    before = _key(project)
    lib.write_bytes(b"\x7fELF v2")
    assert _key(project) != before


def test_relative_identity_files_are_under_the_toolchain_prefix(project: Project) -> None:
    # The fake toolchain is this interpreter's environment; its prefix holds bin/python*.
    _add_to_tool(project, "  files: ['bin/python3*']\n")
    ident = _tool_dict(project)
    assert ident["files"] and all(label.startswith("bin/python3") for label in ident["files"])


def test_identity_file_pattern_matching_nothing_is_an_error(project: Project) -> None:
    _add_to_tool(project, "  files: ['/nonexistent/vendor/lib/*.so']\n")
    with pytest.raises(ToolNotFound) as info:
        _key(project)
    assert "matches no file" in info.value.message
    assert "/nonexistent/vendor/lib/*.so" in info.value.message


def test_version_command_output_enters_the_key(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = tmp_path / "vendor-version"
    _executable(version, "#!/bin/sh\necho 'vendor compiler 1.0'\n")
    _add_to_tool(project, f"  version_command: [{str(version)!r}, --version]\n")
    monkeypatch.setenv("HF_TOKEN", "hf_s3cr3t")
    assert _tool_dict(project)["version_output"] == "vendor compiler 1.0"
    before = _key(project)
    version.write_text("#!/bin/sh\necho 'vendor compiler 1.1'\n")
    assert _key(project) != before


def test_version_command_runs_in_the_scrubbed_env(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _executable(tmp_path / "leaky-version", '#!/bin/sh\necho "token=$HF_TOKEN"\n')
    _add_to_tool(project, f"  version_command: [{str(version)!r}]\n")
    monkeypatch.setenv("HF_TOKEN", "hf_s3cr3t")
    assert _tool_dict(project)["version_output"] == "token="


def test_version_command_runs_once_while_the_tool_is_unchanged(
    project: Project, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    version = _executable(
        tmp_path / "counted-version", f"#!/bin/sh\necho run >> {runs}\necho 'vendor 1.0'\n"
    )
    _add_to_tool(project, f"  version_command: [{str(version)!r}]\n")
    first = _key(project)
    assert _key(project) == first
    assert runs.read_text().count("run") == 1
    version.write_text(version.read_text().replace("1.0", "1.1"))  # edited: asked again
    assert _key(project) != first
    assert runs.read_text().count("run") == 2


def test_failing_version_command_is_a_tool_error(project: Project, tmp_path: Path) -> None:
    version = _executable(tmp_path / "bad-version", "#!/bin/sh\necho 'licence expired'\nexit 2\n")
    _add_to_tool(project, f"  version_command: [{str(version)!r}]\n")
    with pytest.raises(ToolError) as info:
        _key(project)
    assert "exit code 2" in info.value.message
    assert info.value.tail == ["licence expired"]


# ----------------------------------------------------------------------------- environment


def test_key_env_enters_the_key_and_runtime_env_does_not(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_to_tool(project, "")
    text = (project.root / "profiles" / "fake-compile.yaml").read_text()
    project.write_profile(
        "fake-compile", text + "key_env: [VENDOR_OPT]\nruntime_env: [VENDOR_LICENSE]\n"
    )
    monkeypatch.setenv("VENDOR_OPT", "O2")
    monkeypatch.setenv("VENDOR_LICENSE", "lic-a")
    base = _key(project)
    monkeypatch.setenv("VENDOR_LICENSE", "lic-b")
    assert _key(project) == base  # runtime-only: reaches the tool, never the key
    monkeypatch.setenv("HF_TOKEN", "anything")
    assert _key(project) == base  # an undeclared variable neither
    monkeypatch.setenv("VENDOR_OPT", "O3")
    assert _key(project) != base


def test_toolchain_key_env_enters_the_key(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    toolchain = project.root / "profiles" / "toolchains" / "fake.yaml"
    toolchain.write_text(toolchain.read_text() + "key_env: [VENDOR_SDK_ROOT]\n")
    monkeypatch.setenv("VENDOR_SDK_ROOT", "/opt/a")
    a = _key(project)
    monkeypatch.setenv("VENDOR_SDK_ROOT", "/opt/b")
    assert _key(project) != a


# ----------------------------------------------------------------------------- tool.uses


def test_uses_must_be_in_the_toolchains_packages(project: Project) -> None:
    _add_to_tool(project, "  uses: [onnxslim]\n")
    with pytest.raises(SpecError) as info:
        _key(project)
    assert info.value.field == "tool.uses"
    assert "onnxslim" in info.value.message and "'fake'" in info.value.message


def test_every_builtin_profile_declares_what_its_tool_invokes() -> None:
    from rmbuild.config import PACKAGE_DIR
    from rmbuild.declare.profiles import list_profiles
    from rmbuild.toolrun.toolchains import find_toolchain

    profiles = [p for p in list_profiles(None) if not isinstance(p, SpecError)]
    assert len(profiles) >= 9
    for loaded in profiles:
        toolchain = find_toolchain(loaded.profile.toolchain, None)
        toolchain.check_uses(loaded.profile, loaded.path)  # raises if one is missing
        if loaded.profile.tool.package:
            assert loaded.profile.tool.package in toolchain.packages, loaded.profile.name
    # The fault this guards: `slim: true` runs onnxslim inside the export.
    export = next(p.profile for p in profiles if p.profile.name == "onnx-export")
    assert "slim" in export.flags and "onnxslim" in export.tool.uses
    template = (PACKAGE_DIR.parent / "templates" / export.template).read_text()
    assert "--slim" in template
    assert "onnxslim" in find_toolchain("optimum-onnx", None).packages
