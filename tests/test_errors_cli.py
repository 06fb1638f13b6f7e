"""Every bad input, through the CLI as a user meets it.

Each test checks: the exit code documented in ``rmbuild --help``, a message that names the
file/line/field (or the tool and its log), no traceback, and no artifact row or half-built
files left where ``ls``/``run`` could see them.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rmbuild.errors import EXIT_NOT_FOUND, EXIT_SPEC, EXIT_TOOL

if TYPE_CHECKING:
    from conftest import Project


def _one_paragraph(err: str) -> None:
    assert "\n\n" not in err.strip(), err


def _log_path(err: str) -> Path:
    match = re.search(r"full log: (\S+)", err)
    assert match, err
    return Path(match.group(1))


# ----------------------------------------------------------------------------- model.yaml


def test_malformed_yaml_names_file_and_line(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec("name: tiny\nsource:\n  path: model\ntargets:\n  fake: [unclosed\n")
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    _one_paragraph(r.err)
    assert f"{project.spec}:" in r.err
    assert "malformed YAML" in r.err
    # The parser notices the unclosed flow sequence at the end of input (line 6).
    assert re.search(re.escape(str(project.spec)) + r":[56]\b", r.err), r.err
    project.assert_empty(cli)


def test_unknown_field_names_field_and_its_line(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text().replace("source:", "colour: red\nsource:"))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{project.spec}:2: field 'colour': unknown field" in r.err


def test_unknown_nested_field_names_dotted_path_and_line(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text() + "    flgs: {mode: ok}\n")
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{project.spec}:8: field 'targets.fake.flgs': unknown field" in r.err


def test_wrong_type_names_field_line_and_value(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec("name: tiny\nsource:\n  path: model\ntargets: [a, b]\n")
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{project.spec}:4: field 'targets'" in r.err
    assert "dictionary" in r.err and "['a', 'b']" in r.err
    project.assert_empty(cli)


def test_wrong_type_in_a_profile_names_the_profile_file(project: Project, cli) -> None:  # noqa: ANN001
    path = project.write_profile(
        "fake-compile", project.fake_profile().replace("timeout: 30", "timeout: soon")
    )
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    line = path.read_text().splitlines().index("timeout: soon") + 1
    assert f"{path}:{line}: field 'timeout'" in r.err
    assert "'soon'" in r.err


def test_target_naming_missing_profile_lists_profiles(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text(profile="no-such-profile"))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{project.spec}:7: field 'profile': no profile named 'no-such-profile'" in r.err
    found = re.search(r"profiles found: (.*)", r.err)
    assert found, r.err
    assert "fake-compile" in found.group(1)
    assert "hint" in r.err
    project.assert_empty(cli)


def test_unknown_flag_override_names_field_and_lists_flags(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text({"levle": 2}))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{project.spec}:9: field 'targets.fake.flags.levle'" in r.err
    assert "level" in r.err  # the flags that do exist are listed


def test_template_with_undefined_variable_names_template_and_line(
    project: Project,  # noqa: ANN001
    cli,
) -> None:
    template = project.write_template(
        "fake.argv.j2", "{{ tool }}\n--out\n{{ flags.no_such_flag }}\n{{ output }}\n"
    )
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{template}:3" in r.err
    assert "undefined" in r.err and "no_such_flag" in r.err
    project.assert_empty(cli)


def test_template_syntax_error_names_template_and_line(project: Project, cli) -> None:  # noqa: ANN001
    template = project.write_template("fake.argv.j2", "{{ tool }}\n--out\n{% if %}\n")
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{template}:3" in r.err and "syntax" in r.err


def test_missing_model_folder_names_source_path_and_line(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text(source="no-such-folder"))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    _one_paragraph(r.err)
    assert f"{project.spec}:3: field 'source.path'" in r.err
    assert "no-such-folder" in r.err and "does not exist" in r.err
    project.assert_empty(cli)


def test_missing_model_yaml(project: Project, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(project.root / "nope.yaml"))
    r.assert_failure(EXIT_SPEC)
    assert "nope.yaml" in r.err and "not found" in r.err


# ----------------------------------------------------------------------------- the compiler


def test_compiler_not_installed(project: Project, cli) -> None:  # noqa: ANN001
    project.write_profile("fake-compile", project.fake_profile(tool="no-such-compiler-xyz"))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_TOOL)
    _one_paragraph(r.err)
    assert "'no-such-compiler-xyz' is not installed in toolchain 'fake'" in r.err
    assert "hint" in r.err and "looked in" in r.err
    project.assert_empty(cli)


def test_compiler_path_that_does_not_exist(project: Project, cli, tmp_path: Path) -> None:  # noqa: ANN001
    missing = tmp_path / "nowhere" / "cc"
    project.write_profile("fake-compile", project.fake_profile(tool=str(missing)))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_TOOL)
    assert str(missing) in r.err and "not installed" in r.err
    project.assert_empty(cli)


def test_compiler_exit_nonzero_shows_last_lines_and_log(project: Project, cli) -> None:  # noqa: ANN001
    project.set_flags(mode="fail", lines=30)
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_TOOL)
    assert "fake-compiler" in r.err and "failed with exit code 3" in r.err
    assert "comes from the tool" in r.err
    # The tail: the last lines, not the first ones.
    assert "fatal: the fake compiler failed on purpose" in r.err
    assert "log line 30" in r.err
    assert "log line 5\n" not in r.err
    log = _log_path(r.err)
    assert log.is_file()
    text = log.read_text()
    assert "log line 1\n" in text and "log line 30\n" in text  # the full log is kept
    assert str(project.fake) in text.splitlines()[0]  # the command line heads the log
    project.assert_empty(cli)


def test_compiler_hanging_past_timeout_is_killed(project: Project, cli) -> None:  # noqa: ANN001
    project.write_profile("fake-compile", project.fake_profile(timeout=1))
    marker = project.root / "started.pid"
    project.set_flags(mode="hang", lines=2, marker=str(marker))
    t0 = time.monotonic()
    r = cli("compile", str(project.spec))
    elapsed = time.monotonic() - t0
    r.assert_failure(EXIT_TOOL)
    assert elapsed < 25, elapsed  # a bound on a hang (the tool sleeps far longer), not on speed
    assert "did not finish within 1 s and was killed" in r.err
    assert "log line 2" in r.err
    assert _log_path(r.err).is_file()
    pid = int(marker.read_text())
    assert not _alive(pid), "the hung compiler survived its timeout"
    project.assert_empty(cli)


def test_compiler_succeeding_without_outputs(project: Project, cli) -> None:  # noqa: ANN001
    project.set_flags(mode="no-output")
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_TOOL)
    assert "exited 0 but did not write its declared outputs: model.bin" in r.err
    assert _log_path(r.err).is_file()
    project.assert_empty(cli)


def test_failed_build_is_not_cached(project: Project, cli) -> None:  # noqa: ANN001
    """A failure never poisons the cache: the same inputs, once the tool works, build."""
    counter = project.root / "runs.txt"
    project.set_flags(mode="fail", counter=str(counter))
    assert cli("compile", str(project.spec)).code == EXIT_TOOL
    project.set_flags(counter=str(counter))
    ok = cli("compile", str(project.spec))
    assert ok.code == 0, ok.err
    assert len(counter.read_text().splitlines()) == 2


# ----------------------------------------------------------------------------- artifact ids


def test_unknown_artifact_id(project: Project, cli) -> None:  # noqa: ANN001
    for args in (
        ("show", "deadbeef"),
        ("run", "--artifact", "deadbeef"),
        ("tag", "deadbeef", "some-alias"),
    ):
        r = cli(*args)
        r.assert_failure(EXIT_NOT_FOUND)
        assert "error[artifact-not-found]: no artifact matches 'deadbeef'" in r.err
        assert "rmbuild ls" in r.err


def _commit(store, key: str, tmp_path: Path) -> None:  # noqa: ANN001
    src = tmp_path / f"tree-{key[:8]}"
    src.mkdir()
    (src / "model.bin").write_bytes(key.encode())
    manifest = store.put_tree(src)
    store.commit(
        key,
        manifest,
        model="tiny",
        target="fake",
        backend="onnxruntime",
        metadata={"profile": "fake-compile", "stage": "compile"},
    )


def test_ambiguous_prefix_lists_candidates(project: Project, cli, tmp_path: Path) -> None:  # noqa: ANN001
    from rmbuild.storage.store import open_store

    a, b = "abcd1" + "0" * 59, "abcd2" + "0" * 59
    with open_store() as store:
        _commit(store, a, tmp_path)
        _commit(store, b, tmp_path)
    r = cli("show", "abcd")
    r.assert_failure(EXIT_NOT_FOUND)
    assert "'abcd' is ambiguous: 2 artifacts start with it" in r.err
    assert a[:12] in r.err and b[:12] in r.err
    assert "more characters" in r.err
    # One more character picks one.
    ok = cli("show", "abcd2", "--json")
    assert ok.code == 0, ok.err
    assert ok.json()["id"] == b


def test_too_short_prefix_says_how_many_characters(project: Project, cli, tmp_path: Path) -> None:  # noqa: ANN001
    """A 2-character prefix of a real artifact must not look like 'no such artifact'."""
    from rmbuild.storage.store import open_store

    with open_store() as store:
        _commit(store, "ab" + "1" * 62, tmp_path)
    r = cli("show", "ab")
    r.assert_failure(EXIT_NOT_FOUND)
    assert "at least 4" in r.err


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            state = "R"
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_a_misspelt_upstream_stage_override_is_an_error(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text() + "    stages:\n      onnx-exprot: {flags: {}}\n")
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{project.spec}:9: field 'targets.fake.stages.onnx-exprot'" in r.err
    assert "no upstream stage 'onnx-exprot'" in r.err
    project.assert_empty(cli)


def test_a_file_as_model_source_names_source_path(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text(source="model/config.json"))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert f"{project.spec}:3: field 'source.path'" in r.err and "is a file" in r.err
    project.assert_empty(cli)


def test_a_broken_profile_is_listed_as_invalid_not_hiding_the_others(
    project: Project,  # noqa: ANN001
    cli,
) -> None:
    project.write_profile("broken", "name: broken\nbackend: [not, a, string]\n")
    r = cli("profiles", "--from", str(project.root), "--json")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in r.json()}
    # Still listed and valid (it may be unavailable only for want of onnxruntime, its backend).
    fake = rows["fake-compile"]
    assert fake["available"] or "invalid" not in (fake.get("reason") or "")
    assert not rows["broken"]["available"] and "invalid" in rows["broken"]["reason"]
    assert "broken.yaml:2" in rows["broken"]["reason"]
