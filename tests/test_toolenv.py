"""rmbuild/toolenv.py: the environment a toolchain's processes get is built, not inherited."""

from __future__ import annotations

from rmbuild.toolchains import Toolchain
from rmbuild.toolenv import tool_env


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
