"""The IREE host probe is cached by the compiler's identity and the CPU (issue 9): a hit must
not start iree-compile in every process."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from rmbuild.backends.iree import probe

FAKE = """\
import os, sys
with open(os.environ["FAKE_IREE_COUNTER"], "a") as f:
    f.write("run\\n")
sys.stdin.read()
print('#hal.executable.target<"llvm-cpu", "embedded-elf-x86_64", {cpu = "fakecpu", '
      'cpu_features = "+avx,+avx2"}>')
"""


def _tool(folder: Path) -> Path:
    tool = folder / "iree-compile"
    tool.write_text(f"#!{sys.executable}\n{FAKE}")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def test_probe_asked_once_per_compiler_build(tmp_path: Path, store_dir: Path, monkeypatch) -> None:
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("FAKE_IREE_COUNTER", str(counter))
    tool = _tool(tmp_path)
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
    monkeypatch.setenv("FAKE_IREE_COUNTER", str(counter))
    tool = _tool(tmp_path)
    probe.resolve_llvmcpu(tool)
    probe.resolve_llvmcpu(tool, cpu="znver4")
    assert counter.read_text().count("run") == 2
    probe._resolve.cache_clear()
