"""Provisioned toolchains: install into a temp folder and rename, a marker written
last, safe to interrupt and rerun; the lock's digest in the identity and the keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmbuild.errors import BackendUnavailable, SpecError
from rmbuild.toolrun import provision
from rmbuild.toolrun.toolchains import find_toolchain

TINY = """\
name: tiny
description: a provisioned toolchain with an empty lock (a bare venv)
lock: tiny.lock
requires_python: ">=3.9"
packages: [pip]
system_tools:
  - name: no-such-cross-gcc
    check: [no-such-cross-gcc-xyz, --version]
    debian: gcc-no-such
probe: |
  import json; print(json.dumps({"answer": 42}))
"""

PROFILE = """\
name: tiny-compile
backend: onnxruntime
stage: compile
input_format: hf
output_format: tiny-bin
toolchain: tiny
tool:
  name: python
template: tiny.argv.j2
outputs: [out.txt]
"""

TEMPLATE = """\
{{ tool }}
-c
import sys; open(sys.argv[1] + '/out.txt', 'w').write('x')
{{ output }}
"""


@pytest.fixture
def tiny(project, data_dir: Path) -> Path:  # noqa: ANN001
    folder = project.root / "profiles" / "toolchains"
    (folder / "tiny.yaml").write_text(TINY)
    (folder / "tiny.lock").write_text("# nothing pinned: a bare venv\n")
    project.write_profile("tiny-compile", PROFILE)
    project.write_template("tiny.argv.j2", TEMPLATE)
    return project.root


def test_install_creates_marked_venv_and_identity(tiny: Path, data_dir: Path) -> None:
    tc = find_toolchain("tiny", tiny)
    assert not provision.status(tc).installed
    with pytest.raises(BackendUnavailable, match="not installed") as exc:
        tc.identity()
    assert exc.value.hint == "rmbuild toolchain install tiny"
    result = provision.install(tc)
    assert result.path == data_dir / "toolchains" / "tiny"
    assert (result.path / provision.MARKER).is_file()
    assert tc.python_path.is_file()
    # The system tool check reports what is missing and how to get it, without failing.
    assert [t.name for t in result.missing_tools] == ["no-such-cross-gcc"]
    assert result.missing_tools[0].install_hint() == "sudo apt-get install -y gcc-no-such"
    ident = tc.identity()
    assert ident["lock"] == provision.lock_digest(tc)
    assert ident["probe"] == {"answer": 42}
    assert ident["python"].count(".") == 2
    # A rerun reuses it.
    assert provision.install(tc).reused


def test_interrupted_install_is_never_used_and_rerun_completes(
    tiny: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tc = find_toolchain("tiny", tiny)

    def killed(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the venv was made, before the marker

    monkeypatch.setattr(provision, "_probe", killed)
    with pytest.raises(KeyboardInterrupt):
        provision.install(tc)
    partial = data_dir / "toolchains" / ".partial-tiny"
    assert partial.is_dir() and not (data_dir / "toolchains" / "tiny").exists()
    st = provision.status(tc)
    assert not st.installed and "interrupted install" in st.reason
    with pytest.raises(BackendUnavailable, match="interrupted install"):
        tc.identity()
    monkeypatch.undo()
    monkeypatch.setenv("RMBUILD_DATA_DIR", str(data_dir))
    lines: list[str] = []
    provision.install(tc, on_line=lines.append)
    assert any("removing an interrupted install" in line for line in lines)
    assert provision.status(tc).installed and not partial.exists()


def test_relocated_scripts_point_at_the_final_venv(tiny: Path, data_dir: Path) -> None:
    tc = find_toolchain("tiny", tiny)
    provision.install(tc)
    final = data_dir / "toolchains" / "tiny"
    for path in (final / "bin").iterdir():
        if path.is_file() and not path.is_symlink():
            assert ".partial-tiny" not in path.read_text(errors="replace"), path


def test_hand_edited_lock_changes_identity_and_keys(tiny: Path, data_dir: Path, project) -> None:  # noqa: ANN001
    from rmbuild.build import action_key, plan
    from rmbuild.declare.spec import load_model_spec

    project.write_spec(
        "name: m\nsource: {path: model, format: hf}\ntargets:\n  t: {profile: tiny-compile}\n"
    )
    spec = load_model_spec(project.spec)
    provision.install(find_toolchain("tiny", tiny))
    (stage,) = plan(spec, "t")
    before = action_key(stage, {"model": "0" * 64}, spec.root).compute()
    assert action_key(stage, {"model": "0" * 64}, spec.root).compute() == before  # stable

    lock = tiny / "profiles" / "toolchains" / "tiny.lock"
    lock.write_text(lock.read_text() + "# edited by hand\n")
    tc = find_toolchain("tiny", tiny)
    st = provision.status(tc)
    assert not st.installed and "another lock" in st.reason
    (stage,) = plan(spec, "t")
    with pytest.raises(BackendUnavailable, match="another lock") as exc:
        action_key(stage, {"model": "0" * 64}, spec.root)  # never the old install's identity
    assert exc.value.hint == "rmbuild toolchain install tiny"
    provision.install(tc)
    (stage,) = plan(spec, "t")
    after = action_key(stage, {"model": "0" * 64}, spec.root).compute()
    assert after != before


def test_remove_and_not_provisioned(tiny: Path, data_dir: Path) -> None:
    tc = find_toolchain("tiny", tiny)
    provision.install(tc)
    assert provision.remove(tc)
    assert not provision.status(tc).installed
    assert not provision.remove(tc)
    with pytest.raises(SpecError, match="not provisioned"):
        provision.install(find_toolchain("fake", tiny))


def test_lock_and_python_together_are_refused(tiny: Path) -> None:
    folder = tiny / "profiles" / "toolchains"
    (folder / "both.yaml").write_text("name: both\npython: /usr/bin/python3\nlock: tiny.lock\n")
    with pytest.raises(SpecError, match="provisioned .lock. or registered"):
        find_toolchain("both", tiny)


def test_missing_lock_file_names_the_field(tiny: Path) -> None:
    folder = tiny / "profiles" / "toolchains"
    (folder / "nolock.yaml").write_text("name: nolock\nlock: gone.lock\n")
    with pytest.raises(SpecError, match="gone.lock"):
        find_toolchain("nolock", tiny)


def test_marker_records_installed_versions(tiny: Path, data_dir: Path) -> None:
    tc = find_toolchain("tiny", tiny)
    provision.install(tc)
    marker = json.loads((data_dir / "toolchains" / "tiny" / provision.MARKER).read_text())
    assert marker["lock_sha256"] == provision.lock_digest(tc)
    assert marker["size"] > 0


def test_a_system_tool_check_runs_scrubbed_of_the_callers_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The check runs in the environment the toolchain's tools get, not the caller's.
    from rmbuild.toolrun.provision import missing_system_tools
    from rmbuild.toolrun.toolchains import SystemTool, Toolchain

    tool = SystemTool(name="no-secrets", check=["sh", "-c", 'test -z "$AWS_SECRET_ACCESS_KEY"'])
    toolchain = Toolchain(name="vendor", python=None, system_tools=[tool])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    assert missing_system_tools(toolchain) == []


ENV_PROBE = """\
probe: |
  import json, os, sys
  print(json.dumps({"seen": sorted(k for k in ("AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "LD_PRELOAD",
                    "PYTHONPATH") if k in os.environ),
                    "fake_on_path": any(p.endswith("fakepp") for p in sys.path)}))
"""


def test_install_probes_get_none_of_the_callers_secrets(
    tiny: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The listing and the toolchain's own probe (which imports the vendor's native module and
    # may run its compiler) run isolated in the toolchain's scrubbed environment.
    path = tiny / "profiles" / "toolchains" / "tiny.yaml"
    path.write_text(TINY.split("probe: |")[0] + ENV_PROBE)
    fake = tiny / "fakepp" / "onnx-999.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: onnx\nVersion: 999.0\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("LD_PRELOAD", "/nonexistent/preload.so")
    tc = find_toolchain("tiny", tiny)
    provision.install(tc)
    ident = tc.identity()
    assert ident["probe"] == {"seen": [], "fake_on_path": False}
    marker = json.loads((data_dir / "toolchains" / "tiny" / provision.MARKER).read_text())
    assert "onnx" not in marker["packages"]  # the caller's PYTHONPATH is not the venv's
