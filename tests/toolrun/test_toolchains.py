"""rmbuild/toolrun/toolchains.py: a toolchain's identity comes from its own interpreter,
checked to be a Python, asked in the environment its tools get, never the caller's."""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from rmbuild.errors import SpecError
from rmbuild.toolrun import toolchains
from rmbuild.toolrun.toolchains import Toolchain, find_toolchain

# What a caller's environment may hold that no process rmbuild starts may see.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
    "HF_TOKEN": "hf_secretvalue",
    "LD_PRELOAD": "/nonexistent/preload.so",
}


def fake_dist(folder: Path, name: str, version: str) -> Path:
    """A folder holding an installed-looking ``name`` ``version`` (what PYTHONPATH could add)."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


@pytest.fixture
def dumping_python(tmp_path: Path) -> tuple[Path, Path]:
    """A real venv interpreter whose every start appends its environment to a file (a .pth
    line runs at site import, which `-I` keeps); returns (python, the dump file)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dump = tmp_path / "env.jsonl"
    (Path(purelib) / "zz_dump_env.pth").write_text(
        f"import os, json; open({str(dump)!r}, 'a').write(json.dumps(dict(os.environ)) + '\\n')\n"
    )
    return python, dump


def _seen(dump: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in dump.read_text().splitlines()]


def _caller_with_secrets(monkeypatch: pytest.MonkeyPatch, pythonpath: Path) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", str(pythonpath))


def test_identity_probe_gets_the_built_environment(
    tmp_path: Path, dumping_python: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    python, dump = dumping_python
    _caller_with_secrets(monkeypatch, fake_dist(tmp_path / "pp", "onnx", "999.0"))
    toolchain = Toolchain(name="vendor", python=str(python), packages=["onnx"])
    ident = toolchain.identity()
    # The fake package on the caller's PYTHONPATH did not enter the recorded identity.
    assert ident["packages"] == {"onnx": None}
    runs = _seen(dump)
    assert runs, "the probe did not run in the venv"
    for env in runs:
        assert not ({*SECRETS, "PYTHONPATH"} & set(env)), sorted(env)
        assert env["PATH"].split(":")[0] == str(python.parent)


def test_package_version_asks_the_same_way(
    tmp_path: Path, dumping_python: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    python, _ = dumping_python
    monkeypatch.setenv("PYTHONPATH", str(fake_dist(tmp_path / "pp", "onnx", "999.0")))
    toolchain = Toolchain(name="vendor", python=str(python), packages=[])
    assert toolchain.package_version("onnx") is None


def test_a_package_on_pythonpath_does_not_enter_mains_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rmbuild itself was started with the PYTHONPATH (so it is on sys.path); its tools run
    # without it, so the in-process identity of `main` must not see it either.
    try:
        real = md.version("onnx")  # None in a venv without the onnx extra
    except md.PackageNotFoundError:
        real = None
    fake = fake_dist(tmp_path / "pp", "onnx", "999.0")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    monkeypatch.syspath_prepend(str(fake))
    assert md.version("onnx") == "999.0"  # what reading sys.path naively would record
    toolchains._identity_here.cache_clear()
    try:
        ident = Toolchain(name="main-like", python=None, packages=["onnx"]).identity()
    finally:
        toolchains._identity_here.cache_clear()
    assert ident["packages"]["onnx"] == real != "999.0"


# ----------------------------------------------------------------------------- the interpreter


def _toolchain_file(root: Path, python: str) -> Path:
    folder = root / "profiles" / "toolchains"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vendor.yaml"
    path.write_text(f"name: vendor\npackages: [onnx]\npython: {json.dumps(python)}\n")
    return path


def test_a_shell_as_python_is_a_spec_error_at_its_line(tmp_path: Path) -> None:
    path = _toolchain_file(tmp_path, "/bin/sh")
    with pytest.raises(SpecError) as exc:
        find_toolchain("vendor", tmp_path)
    assert exc.value.exit_code == 3
    assert exc.value.file == str(path) and exc.value.line == 3 and exc.value.field == "python"
    assert "import json" not in str(exc.value)  # the probe's source is never shown


def test_a_shell_script_named_python_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "env" / "bin" / "python"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    _toolchain_file(tmp_path, str(script))
    with pytest.raises(SpecError, match="is a script, not a Python interpreter"):
        find_toolchain("vendor", tmp_path)
    with pytest.raises(SpecError, match="field 'python'"):
        Toolchain(name="vendor", python=str(script)).identity()  # built without a file too
    assert not marker.exists()


def test_a_non_python_binary_behind_a_python_name_is_refused(tmp_path: Path) -> None:
    # An executable binary named python (here a link to the shell): the name and format pass,
    # `-V` does not answer like a Python, so the probe is never passed to it.
    link = tmp_path / "bin" / "python3"
    link.parent.mkdir()
    link.symlink_to("/bin/sh")
    _toolchain_file(tmp_path, str(link))
    toolchain = find_toolchain("vendor", tmp_path)
    with pytest.raises(SpecError, match="did not answer like a Python") as exc:
        toolchain.identity()
    assert exc.value.exit_code == 3 and exc.value.line == 3


def test_a_real_python_is_accepted(tmp_path: Path, dumping_python: tuple[Path, Path]) -> None:
    python, _ = dumping_python
    _toolchain_file(tmp_path, str(python))
    ident = find_toolchain("vendor", tmp_path).identity()
    assert ident["python"] == sysconfig.get_python_version() + "." + str(sys.version_info[2])


def test_a_missing_interpreter_is_still_tool_not_found(tmp_path: Path) -> None:
    from rmbuild.errors import ToolNotFound

    _toolchain_file(tmp_path, str(tmp_path / "nowhere" / "python"))
    toolchain = find_toolchain("vendor", tmp_path)  # loading it is fine: "not installed"
    with pytest.raises(ToolNotFound, match="does not run"):
        toolchain.identity()


def test_compile_with_a_shell_toolchain_is_exit_3_and_runs_nothing(project, cli) -> None:  # noqa: ANN001
    marker = project.root / "ran"
    script = project.root / "python"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    (project.root / "profiles" / "toolchains" / "fake.yaml").write_text(
        f"name: fake\npython: {json.dumps(str(script))}\npackages: []\n"
    )
    result = cli("compile", str(project.spec), "--target", "fake")
    assert result.code == 3, result.err
    assert "fake.yaml:2" in result.err and "python" in result.err
    assert "import json" not in result.err
    assert not marker.exists()
