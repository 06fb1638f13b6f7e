"""The IREE host probe is cached by the compiler's identity and the CPU: a hit must
not start iree-compile in every process."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

from rmbuild.backends.iree import probe

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "HF_TOKEN": "hf_secret",
    "LD_PRELOAD": "/nonexistent/preload.so",
    "PYTHONPATH": "/nonexistent/pythonpath",
}

# The counter's path is written into the script: the probe runs in a scrubbed environment,
# so a variable set by the test would not reach it.
FAKE = """\
import json, os, sys
with open(COUNTER, "a") as f:
    f.write("run\\n")
with open(COUNTER + ".env", "w") as f:
    json.dump(dict(os.environ), f)
sys.stdin.read()
print('#hal.executable.target<"llvm-cpu", "embedded-elf-x86_64", {cpu = "fakecpu", '
      'cpu_features = "+avx,+avx2"}>')
"""


def _tool(folder: Path, counter: Path) -> Path:
    tool = folder / "iree-compile"
    tool.write_text(f"#!{sys.executable}\nCOUNTER = {str(counter)!r}\n{FAKE}")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def test_probe_asked_once_per_compiler_build(tmp_path: Path, store_dir: Path, monkeypatch) -> None:
    counter = tmp_path / "count.txt"
    tool = _tool(tmp_path, counter)
    first = probe.resolve_llvmcpu(tool)
    assert first["cpu"] == "fakecpu" and first["cpu_features"] == ["avx", "avx2"]
    probe._resolve.cache_clear()  # a new process: only the disk cache is left
    assert probe.resolve_llvmcpu(tool) == first
    assert counter.read_text().count("run") == 1
    assert list((store_dir / "probe-cache").glob("iree-*.txt"))
    # A new build of the compiler (its stat moves) is asked again.
    tool.write_text(tool.read_text() + "# rebuilt\n")
    later = time.time() + 5
    os.utime(tool, (later, later))
    probe._resolve.cache_clear()
    assert probe.resolve_llvmcpu(tool) == first
    assert counter.read_text().count("run") == 2


def test_other_arguments_are_asked(tmp_path: Path, store_dir: Path, monkeypatch) -> None:
    counter = tmp_path / "count.txt"
    tool = _tool(tmp_path, counter)
    probe.resolve_llvmcpu(tool)
    probe.resolve_llvmcpu(tool, cpu="znver4")
    assert counter.read_text().count("run") == 2
    probe._resolve.cache_clear()


def test_the_probe_gets_none_of_the_callers_secrets(
    tmp_path: Path, store_dir: Path, monkeypatch
) -> None:
    # iree-compile is a process rmbuild starts: it gets the built environment, not the caller's.
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    counter = tmp_path / "count.txt"
    probe.resolve_llvmcpu(_tool(tmp_path, counter), cpu="secret-check")
    seen = json.loads(Path(f"{counter}.env").read_text())
    assert not set(SECRETS) & set(seen), seen
    assert seen["PATH"].split(os.pathsep)[0] == str(tmp_path)  # the compiler's own dir first
