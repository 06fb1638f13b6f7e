"""BinaryCompilerAdapter: rendering (for the key and for the run), running, checking outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from rmbuild.declare.spec import BuildProfile
from rmbuild.errors import OutputsMissing, SpecError, ToolError, ToolNotFound, ToolTimeout
from rmbuild.toolrun.adapter import BinaryCompilerAdapter
from rmbuild.toolrun.toolchains import Toolchain

if TYPE_CHECKING:
    from conftest import Project

TOOLCHAIN = Toolchain(name="fake", python=None, packages=[])


def _profile(project: Project, **changes: object) -> BuildProfile:
    data = {
        "name": "fake-compile",
        "backend": "onnxruntime",
        "input_format": "hf",
        "output_format": "fake-bin",
        "toolchain": "fake",
        "tool": {"name": str(project.fake)},
        "template": "fake.argv.j2",
        "flags": {
            "mode": "ok",
            "lines": 0,
            "sleep": 0,
            "level": 1,
            "threads": 0,
            "counter": "",
            "marker": "",
            "name": "",
        },
        "runtime_flags": ["threads"],
        "outputs": ["model.bin"],
        "timeout": 30,
    }
    data.update(changes)
    return BuildProfile.model_validate(data)


def _adapter(project: Project, **changes: object) -> BinaryCompilerAdapter:
    return BinaryCompilerAdapter(_profile(project, **changes), TOOLCHAIN, project.root)


def _run(adapter: BinaryCompilerAdapter, tmp_path: Path, flags: dict | None = None, **kw: object):  # noqa: ANN202
    work = tmp_path / "work"
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    merged = {**adapter.profile.flags, **(flags or {})}
    command = adapter.render_for_run(
        merged, inputs={"model": tmp_path / "in"}, output=out, workdir=work
    )
    run = adapter.run(command, workdir=work, log_path=tmp_path / "tool.log", **kw)
    return command, run, out


# ----------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("value", ["a\nb", "a\rb", ["ok", "x\ny"]])
def test_flag_value_with_line_break_is_rejected(project: Project, value: object) -> None:
    adapter = _adapter(project)
    flags = {**adapter.profile.flags, "name": value}
    for render in (
        lambda: adapter.render_for_key(flags, ["model"]),
        lambda: adapter.render_for_run(flags, inputs={}, output=project.root, workdir=project.root),
    ):
        with pytest.raises(SpecError) as info:
            render()
        assert info.value.field == "flags.name"
        assert "line breaks" in info.value.message


def test_render_for_run_gives_one_argument_per_line(project: Project, tmp_path: Path) -> None:
    adapter = _adapter(project)
    flags = {**adapter.profile.flags, "name": "x; touch pwned && echo $(id) | cat"}
    out, work = tmp_path / "o u t", tmp_path / "w"
    command = adapter.render_for_run(
        flags, inputs={"model": tmp_path / "m; rm -rf ~"}, output=out, workdir=work
    )
    assert command.argv == [
        str(project.fake),
        "--out",
        str(out),
        "--input",
        str(tmp_path / "m; rm -rf ~"),
        "--mode",
        "ok",
        "--lines",
        "0",
        "--sleep",
        "0",
        "--level",
        "1",
        "--threads",
        "0",
        "--name",
        "x; touch pwned && echo $(id) | cat",
    ]
    assert command.configs == {}


def test_render_for_key_has_roles_not_paths(project: Project) -> None:
    adapter = _adapter(project)
    command = adapter.render_for_key({**adapter.profile.flags, "threads": 8}, ["model"])
    assert command.argv[:5] == [
        "<tool:" + str(project.fake) + ">",
        "--out",
        "<output>",
        "--input",
        "<input:model>",
    ]
    # A runtime-only flag enters the key as a placeholder, never as its value.
    assert command.argv[command.argv.index("--threads") + 1] == "<runtime:threads>"
    assert "8" not in command.argv


def test_configs_are_rendered_into_the_workdir(project: Project, tmp_path: Path) -> None:
    project.write_template("fake.cfg.j2", "level = {{ flags.level }}\nout = {{ output }}\n")
    project.write_template(
        "cfg.argv.j2",
        (project.root / "templates" / "fake.argv.j2").read_text()
        + "--config\n{{ configs['sub/opts.ini'] }}\n",
    )
    adapter = _adapter(project, template="cfg.argv.j2", configs={"sub/opts.ini": "fake.cfg.j2"})
    keyed = adapter.render_for_key(adapter.profile.flags, ["model"])
    assert keyed.configs == {"sub/opts.ini": "level = 1\nout = <output>\n"}
    assert keyed.argv[-2:] == ["--config", "<config:sub/opts.ini>"]
    command, run, out = _run(adapter, tmp_path)
    written = tmp_path / "work" / "sub" / "opts.ini"
    assert written.read_text() == f"level = 1\nout = {out}\n"
    assert command.argv[-1] == str(written)
    assert json.loads((out / "argv.json").read_text())[-1] == str(written)


@pytest.mark.parametrize("rel", ["../escape.ini", "sub/../../escape.ini", "/tmp/escape-abs.ini"])
def test_config_path_escaping_the_workdir_is_refused(
    project: Project, tmp_path: Path, rel: str
) -> None:
    project.write_template("fake.cfg.j2", "x = 1\n")
    # Refused when the profile is read, before anything renders or runs...
    with pytest.raises(ValidationError, match="must stay inside the work dir"):
        _adapter(project, configs={rel: "fake.cfg.j2"})
    # ...and, should an unvalidated profile get through, again when the file is written.
    profile = _profile(project).model_copy(update={"configs": {rel: "fake.cfg.j2"}})
    adapter = BinaryCompilerAdapter(profile, TOOLCHAIN, project.root)
    with pytest.raises(SpecError) as info:
        _run(adapter, tmp_path)
    assert "escapes the work dir" in info.value.message
    assert info.value.field == f"configs.{rel}"
    assert not (tmp_path / "escape.ini").exists()
    assert not (tmp_path / "work" / "escape.ini").exists()
    assert not Path("/tmp/escape-abs.ini").exists()


@pytest.mark.parametrize("value", ["a\u2028--evil", "a\x0c--evil", "a\x85--evil"])
def test_unicode_line_separators_stay_inside_one_argument(
    project: Project, tmp_path: Path, value: str
) -> None:
    command, _, _ = _run(_adapter(project), tmp_path, {"name": value})
    assert command.argv[command.argv.index("--name") + 1] == value


@pytest.mark.parametrize("value", ["a\x00b", "a\x01b"])
def test_nul_and_marker_characters_are_refused(
    project: Project, tmp_path: Path, value: str
) -> None:
    with pytest.raises(SpecError, match="line breaks or NUL"):
        _run(_adapter(project), tmp_path, {"name": value})


# ----------------------------------------------------------------------------- running


def test_run_captures_log_and_streams_lines(project: Project, tmp_path: Path) -> None:
    seen: list[str] = []
    command, run, out = _run(_adapter(project), tmp_path, {"lines": 3}, on_line=seen.append)
    assert run.returncode == 0 and run.argv == command.argv
    assert seen == ["log line 1", "log line 2", "log line 3", "done"]
    log = run.log_path.read_text()
    assert log.startswith("$ " + " ".join(command.argv))
    assert "log line 3\n" in log
    assert (out / "model.bin").is_file()
    _adapter(project).check_outputs(out, run.log_path)


def test_run_passes_arguments_literally(project: Project, tmp_path: Path) -> None:
    value = "x; touch pwned && echo $(id) | cat `id` > out.txt"
    command, _, out = _run(_adapter(project), tmp_path, {"name": value})
    argv = json.loads((out / "argv.json").read_text())
    assert argv == command.argv[1:]
    assert argv[argv.index("--name") + 1] == value
    assert not list(tmp_path.rglob("pwned")) and not list(tmp_path.rglob("out.txt"))


def test_nonzero_exit_raises_tool_error_with_tail(project: Project, tmp_path: Path) -> None:
    with pytest.raises(ToolError) as info:
        _run(_adapter(project), tmp_path, {"mode": "fail", "lines": 25})
    err = info.value
    assert type(err) is ToolError
    assert err.tool == str(project.fake)
    assert err.log_path == tmp_path / "tool.log"
    assert len(err.tail) == 20
    assert err.tail[-1] == "fatal: the fake compiler failed on purpose"
    assert err.tail[0] == "log line 7"
    assert f"full log: {tmp_path / 'tool.log'}" in err.context


def test_timeout_kills_the_tool(project: Project, tmp_path: Path) -> None:
    with pytest.raises(ToolTimeout) as info:
        _run(_adapter(project), tmp_path, {"mode": "hang", "lines": 1}, timeout=0.5)
    assert "did not finish within 0.5 s" in info.value.message
    assert info.value.tail == ["log line 1"]


def test_missing_tool(project: Project, tmp_path: Path) -> None:
    adapter = _adapter(project, tool={"name": "no-such-compiler-xyz"})
    with pytest.raises(ToolNotFound) as info:
        _run(adapter, tmp_path)
    assert info.value.tool == "no-such-compiler-xyz" and info.value.hint


def test_tool_that_is_not_executable(project: Project, tmp_path: Path) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("not a program")
    with pytest.raises(ToolNotFound):
        _run(_adapter(project, tool={"name": str(plain)}), tmp_path)


def test_profile_env_reaches_the_tool_and_tmpdir_is_private(
    project: Project, tmp_path: Path
) -> None:
    project.write_template(
        "env.argv.j2",
        "{{ python }}\n-c\nimport os; print('V=' + "
        "os.environ['FAKE_VAR'], 'T=' + os.environ['TMPDIR'])\n",
    )
    adapter = _adapter(project, template="env.argv.j2", env={"FAKE_VAR": "from-profile"})
    seen: list[str] = []
    _run(adapter, tmp_path, on_line=seen.append)
    assert seen == [f"V=from-profile T={tmp_path / 'work' / 'tmp'}"]


def test_missing_outputs(project: Project, tmp_path: Path) -> None:
    adapter = _adapter(project, outputs=["model.bin", "weights/*.bin"])
    _, run, out = _run(adapter, tmp_path)
    with pytest.raises(OutputsMissing) as info:
        adapter.check_outputs(out, run.log_path)
    assert "weights/*.bin" in info.value.message and "model.bin" not in info.value.message
    assert info.value.log_path == run.log_path


def test_interpreter_is_this_python(project: Project) -> None:
    assert TOOLCHAIN.python_path == Path(sys.executable)


def test_a_tool_leaving_a_background_child_neither_stalls_nor_leaks(
    project: Project, tmp_path: Path
) -> None:
    import os
    import time

    pidfile = tmp_path / "child.pid"
    tool = tmp_path / "daemonizing-compiler"
    tool.write_text(
        "#!/bin/sh\n"
        "# writes its output, then leaves a child holding stdout, like a compile server\n"
        'while [ "$1" != "--out" ]; do shift; done\n'
        'touch "$2/model.bin"\n'
        f"sleep 60 & echo $! > {pidfile}\n"
    )
    tool.chmod(0o755)
    adapter = _adapter(project, tool={"name": str(tool)})
    started = time.monotonic()
    _, run, out = _run(adapter, tmp_path)
    assert run.returncode == 0 and (out / "model.bin").exists()
    # A hang bound: not the 30 s reader timeout, nor the 60 s sleep.
    assert time.monotonic() - started < 25
    child = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it is ours (it is not: it belonged to the tool's session)
            os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        raise AssertionError("the tool's background child outlived the build")


# ----------------------------------------------------------------------------- a full disk


class _FullDisk:
    """A log file whose disk fills up after ``room`` bytes."""

    def __init__(self, path: Path, room: int) -> None:
        self.file = open(path, "wb", buffering=0)  # noqa: SIM115
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            import errno

            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def close(self) -> None:
        self.file.close()


def test_log_on_a_full_disk_stops_the_tool_and_says_disk_full(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmbuild.errors import DiskFull
    from rmbuild.toolrun import toolproc

    monkeypatch.setattr(toolproc, "_open_log", lambda path: _FullDisk(path, room=400))
    # 30 lines, then the tool would hang for an hour: only rmbuild stopping it ends the run.
    with pytest.raises(DiskFull) as info:
        _run(_adapter(project), tmp_path, {"lines": 30, "mode": "hang"})
    err = info.value
    assert err.exit_code == 9 and err.path == tmp_path / "tool.log"
    assert "no space left" in err.message and str(tmp_path / "tool.log") in err.message
    assert isinstance(err.free, int)
    assert f"bytes free: {err.free}" in err.context
    # The tool's last lines were kept in memory, the ones the log lost included.
    kept = [line.strip() for line in err.context if line.startswith("  log line")]
    logged = (tmp_path / "tool.log").read_text().splitlines()
    assert kept and [line for line in kept if line not in logged]
    assert "gc" in (err.hint or "")


def test_config_on_a_full_disk_says_disk_full(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from rmbuild.errors import DiskFull

    project.write_template("fake.cfg.j2", "level = {{ flags.level }}\n")
    adapter = _adapter(project, configs={"opts.ini": "fake.cfg.j2"})

    def full(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFull) as info:
        _run(adapter, tmp_path)
    target = (tmp_path / "work" / "opts.ini").resolve()
    assert info.value.exit_code == 9 and info.value.path == target
    assert f"while writing the config {target}" in info.value.message
    assert not (tmp_path / "tool.log").exists()  # the tool never started


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_log_on_a_real_full_tmpfs(project: Project, tmp_path: Path) -> None:
    from rmbuild.errors import DiskFull

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        adapter = _adapter(project)
        work = tmp_path / "work"
        (work / "out").mkdir(parents=True)
        flags = {**adapter.profile.flags, "lines": 20000, "mode": "hang"}
        command = adapter.render_for_run(
            flags, inputs={"model": tmp_path / "in"}, output=work / "out", workdir=work
        )
        with pytest.raises(DiskFull) as info:
            adapter.run(command, workdir=work, log_path=small / "tool.log")
        assert info.value.path == small / "tool.log"
        assert info.value.free is not None and info.value.free < 4096
        assert any(line.startswith("  log line") for line in info.value.context)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)  # noqa: S607


# ----------------------------------------------------------------------------- environment


ENV_DUMP = "{{ python }}\n-c\nimport json, os; print(json.dumps(dict(os.environ)))\n"


def _tool_env(project: Project, tmp_path: Path, **changes: object) -> dict[str, str]:
    project.write_template("env.argv.j2", ENV_DUMP)
    seen: list[str] = []
    _run(_adapter(project, template="env.argv.j2", **changes), tmp_path, on_line=seen.append)
    return json.loads(seen[0])


def test_caller_secrets_never_reach_the_tool(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_SECRET_ACCESS_KEY": "aws-s3cr3t",
        "HF_TOKEN": "hf_s3cr3t",
        "LD_LIBRARY_PATH": "/evil/lib",
        "LD_PRELOAD": "/evil/lib/hook.so",
        "PYTHONPATH": "/evil/py",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", f"/evil/bin{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    env = _tool_env(project, tmp_path)
    for name in ("AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "LD_LIBRARY_PATH", "LD_PRELOAD"):
        assert name not in env, name
    assert "s3cr3t" not in json.dumps(env) and "/evil" not in json.dumps(env)
    # PATH: the toolchain's bin dir, then the system dirs; nothing of the caller's.
    assert env["PATH"].split(os.pathsep) == [
        str(TOOLCHAIN.bin_dir),
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ]
    assert env["HOME"] == os.environ["HOME"]
    assert env["LC_ALL"] == "C.UTF-8" and env["TZ"] == "UTC"
    assert env["TMPDIR"] == str(tmp_path / "work" / "tmp")


def test_passed_through_variables_reach_the_tool(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VENDOR_KNOB", "keyed")
    monkeypatch.setenv("VENDOR_LICENSE_SERVER", "lic:27000")
    monkeypatch.setenv("NOT_DECLARED", "x")
    env = _tool_env(
        project,
        tmp_path,
        key_env=["VENDOR_KNOB"],
        runtime_env=["VENDOR_LICENSE_SERVER"],
        env={"FIXED": "1"},
    )
    assert env["VENDOR_KNOB"] == "keyed"
    assert env["VENDOR_LICENSE_SERVER"] == "lic:27000"
    assert env["FIXED"] == "1"
    assert "NOT_DECLARED" not in env


def test_toolchain_passes_variables_through(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VENDOR_HOME", "/opt/vendor")
    monkeypatch.setenv("OTHER", "x")
    toolchain = Toolchain(
        name="fake", python=None, runtime_env=["VENDOR_HOME"], env={"VENDOR_MODE": "fast"}
    )
    project.write_template("env.argv.j2", ENV_DUMP)
    adapter = BinaryCompilerAdapter(_profile(project, template="env.argv.j2"), toolchain, None)
    adapter.start = project.root
    seen: list[str] = []
    _run(adapter, tmp_path, on_line=seen.append)
    env = json.loads(seen[0])
    assert env["VENDOR_HOME"] == "/opt/vendor" and env["VENDOR_MODE"] == "fast"
    assert "OTHER" not in env


@pytest.mark.parametrize(
    ("field", "names", "message"),
    [
        ("runtime_env", ["BAD-NAME"], "not an environment variable name"),
        ("key_env", ["1X"], "not an environment variable name"),
    ],
)
def test_passthrough_names_are_validated(
    project: Project, field: str, names: list[str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _profile(project, **{field: names})
    with pytest.raises(ValidationError, match="both keyed"):
        _profile(project, key_env=["X"], runtime_env=["X"])


@pytest.mark.parametrize("field", ["key_env", "runtime_env"])
def test_toolchain_passthrough_names_are_validated(field: str) -> None:
    with pytest.raises(ValidationError, match="'BAD-NAME' is not an environment variable name"):
        Toolchain(name="vendor", **{field: ["BAD-NAME"]})
