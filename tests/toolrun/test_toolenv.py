"""rmbuild/toolrun/toolenv.py: a toolchain's processes get an environment built, not
inherited."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rmbuild.toolrun.toolchains import Toolchain
from rmbuild.toolrun.toolenv import base_env, installer_env, key_env, tool_env


def test_a_process_no_profile_runs_is_scrubbed_the_same_way() -> None:
    # A device query in a vendor SDK's environment (the RBLN probe) has no profile: it still
    # gets only the base, the toolchain's fixed env and what the toolchain passes through.
    toolchain = Toolchain(
        name="vendor", python=None, env={"VENDOR_HOME": "/opt/v"}, runtime_env=["LICENSE_SERVER"]
    )
    caller = {
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "s3cret",
        "LD_LIBRARY_PATH": "/evil",
        "LICENSE_SERVER": "lic:27000",
        "PATH": "/home/me/bin",
    }
    env = tool_env(None, toolchain, None, caller)
    assert env["VENDOR_HOME"] == "/opt/v" and env["LICENSE_SERVER"] == "lic:27000"
    assert env["HOME"] == "/root"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "LD_LIBRARY_PATH" not in env
    assert "/home/me/bin" not in env["PATH"]
    assert env["PATH"].startswith(str(toolchain.bin_dir))


# ----------------------------------------------------------------------------- /proc/<pid>/environ

# The tool a dumpable rmbuild would leak to: it reads its supervisor's argv (which names
# rmbuild's pid), then tries rmbuild's environ; it also reports whether rmbuild's and the
# supervisor's /proc files are its own user's (a non-dumpable process's are root's).
PEEKING_TOOL = """\
import os, sys
sup = os.getppid()
argv = open(f"/proc/{sup}/cmdline", "rb").read().split(b"\\0")
rmbuild = int(argv[argv.index(b"--") - 2])
owners = [os.stat(f"/proc/{pid}/environ").st_uid == os.getuid() for pid in (rmbuild, sup)]
try:
    data = open(f"/proc/{rmbuild}/environ", "rb").read()
    print("READ", b"TOP-SECRET-VALUE" in data, owners)
except OSError as exc:
    print("DENIED", exc.errno, owners)
"""

SCENARIO = """\
import sys
from pathlib import Path
from rmbuild.toolrun.toolenv import base_env
from rmbuild.toolrun.toolproc import run_supervised
folder = Path(sys.argv[1])
finished = run_supervised(
    [sys.executable, str(folder / "peek.py")],
    cwd=folder,
    env=base_env(),
    log_path=folder / "peek.log",
    timeout=60,
    tool="peek",
)
print(finished.tail[-1])
"""


def _unprivileged(python: str) -> list[str] | None:
    """A prefix that runs ``python`` as an ordinary user without CAP_SYS_PTRACE (root reads
    any process's environ, non-dumpable or not: that is the kernel's rule), or None."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    # That user must be able to start this interpreter again from inside (the supervisor).
    check = "import subprocess, sys; subprocess.run([sys.executable, '-c', '0'], check=True)"
    try:
        subprocess.run([*prefix, python, "-c", check], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return prefix


def test_a_tool_cannot_read_rmbuilds_environ(tmp_path: Path) -> None:
    candidates = [sys.executable, shutil.which("python3") or "", "/usr/bin/python3"]
    found = [(p, prefix) for p in candidates if p and (prefix := _unprivileged(p)) is not None]
    if not found:
        pytest.skip(
            "running as root without a way to start an unprivileged user here; root "
            "reads every process's environ, so there is nothing to check as root"
        )
    python, prefix = found[0]
    folder = Path(tempfile.mkdtemp(prefix="rmbuild-environ-"))  # readable by that user
    try:
        folder.chmod(0o777)
        (folder / "peek.py").write_text(PEEKING_TOOL)
        (folder / "scenario.py").write_text(SCENARIO)
        repo = Path(__file__).resolve().parents[2]
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(repo),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_SECRET_ACCESS_KEY": "TOP-SECRET-VALUE",
        }
        done = subprocess.run(
            [*prefix, python, str(folder / "scenario.py"), str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    verdict = done.stdout.strip().splitlines()[-1]
    assert verdict.startswith("DENIED"), verdict
    # Neither rmbuild's nor its supervisor's /proc files are the user's: both non-dumpable.
    assert verdict.endswith("[False, False]"), verdict


def test_starting_a_tool_makes_this_process_non_dumpable(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_DUMPABLE is Linux's")
    import ctypes

    from rmbuild.toolrun.toolproc import run_supervised

    run_supervised(
        [sys.executable, "-c", "0"],
        cwd=tmp_path,
        env=base_env(),
        log_path=tmp_path / "log",
        timeout=60,
        tool="noop",
    )
    pr_get_dumpable = 3
    assert ctypes.CDLL(None).prctl(pr_get_dumpable, 0, 0, 0, 0) == 0


def test_the_installer_gets_its_settings_and_no_other_secret() -> None:
    caller = {
        "HOME": "/root",
        "HTTPS_PROXY": "http://proxy:3128",
        "PIP_INDEX_URL": "https://mirror/simple",
        "UV_CACHE_DIR": "/cache/uv",
        "SSL_CERT_FILE": "/etc/ca.pem",
        "AWS_SECRET_ACCESS_KEY": "s3cret",
        "HF_TOKEN": "hf_x",
        "PYTHONPATH": "/evil",
        "LD_PRELOAD": "/evil.so",
    }
    env = installer_env(Path("/venv/bin"), caller)
    for name in ("HTTPS_PROXY", "PIP_INDEX_URL", "UV_CACHE_DIR", "SSL_CERT_FILE", "HOME"):
        assert env[name] == caller[name]
    for name in ("AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "PYTHONPATH", "LD_PRELOAD"):
        assert name not in env
    assert env["PATH"].split(os.pathsep)[0] == "/venv/bin"


def test_key_env_values_enter_the_key_as_digests() -> None:
    from rmbuild.declare.spec import BuildProfile

    toolchain = Toolchain(name="vendor", python=None, key_env=["HF_TOKEN"], env={"MODE": "a"})
    profile = BuildProfile.model_validate(
        {
            "name": "p",
            "backend": "onnxruntime",
            "stage": "compile",
            "input_format": "hf",
            "output_format": "x",
            "toolchain": "vendor",
            "tool": {"name": "t"},
            "template": "t.j2",
            "outputs": ["o"],
            "key_env": ["REVISION"],
        }
    )
    keyed = key_env(profile, toolchain, {"HF_TOKEN": "hf_abcdefsecret", "REVISION": ""})
    assert keyed["MODE"] == "a"  # a fixed value is written in a file: kept as is
    assert keyed["HF_TOKEN"] == "sha256:" + hashlib.sha256(b"hf_abcdefsecret").hexdigest()
    assert keyed["REVISION"] == ""  # unset or empty: nothing to hide
    other = key_env(profile, toolchain, {"HF_TOKEN": "hf_other"})
    assert other["HF_TOKEN"] != keyed["HF_TOKEN"]  # still keys the artifact
