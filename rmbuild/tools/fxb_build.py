"""``fxb build`` for rmbuild, run by the furiosa toolchain's Python.

Two checks the vendor's CLI makes only after minutes, or in words that do not say what to do:

* the aarch64 cross gcc: ``furiosa-tcc`` links every kernel with it, and without it fails
  after the whole kernel generation with "No such file or directory (os error 2)". Checked
  here first (exit 3) with the package that provides it;
* the model family: the RNGD kernels exist for some architectures only. A build that fails
  for that reason keeps the vendor's message and adds the families this furiosa-llm supports.

Then it runs ``<venv>/bin/fxb build ARGS...`` as a child (its output streamed through), and
exits with its exit code. Standard library only: it runs in the vendor's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CROSS_GCC = "aarch64-linux-gnu-gcc"
EXIT_NO_CROSS_GCC = 3
EXIT_UNSUPPORTED = 5
# How fxb 2026.4 says a model is outside its kernels: no registry entry for the architecture,
# or a config field the family's kernels need (GPT-2 has no intermediate_size).
UNSUPPORTED_WORDS = ("no model registry entry", "not supported", "unsupported", "in config.json")


def _cross_gcc() -> str | None:
    prefix = os.environ.get("CROSS_PREFIX")
    if prefix and os.access(prefix + "gcc", os.X_OK):
        return prefix + "gcc"
    return shutil.which(CROSS_GCC)


def supported_families() -> list[str]:
    """Model families furiosa-kernels has RNGD kernels for: its subpackages (llama, qwen3,
    gemma4, ...), found without importing them."""
    import importlib.util
    import pkgutil

    try:
        spec = importlib.util.find_spec("furiosa.kernels")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(
        info.name
        for info in pkgutil.iter_modules(list(spec.submodule_search_locations))
        if info.ispkg and info.name != "common" and not info.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    if _cross_gcc() is None:
        print(
            f"rmbuild: {CROSS_GCC} not found: furiosa-tcc links every RNGD kernel with the "
            "aarch64 cross gcc and would fail only after generating them all.\n"
            "rmbuild: install it first: sudo apt-get install -y gcc-aarch64-linux-gnu "
            "(Debian/Ubuntu), or set CROSS_PREFIX=<dir>/aarch64-linux-gnu-",
            flush=True,
        )
        return EXIT_NO_CROSS_GCC
    fxb = Path(sys.executable).parent / "fxb"
    proc = subprocess.Popen(
        [str(fxb), *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        tail = (tail + [line])[-200:]
    code = proc.wait()
    text = "".join(tail).lower()
    if code != 0 and any(word in text for word in UNSUPPORTED_WORDS):
        families = supported_families()
        print(
            "rmbuild: the RNGD kernels do not support this model (furiosa-llm's message "
            "above). Families with RNGD kernels in this furiosa-llm: "
            + (", ".join(families) or "see furiosa-llm's documentation"),
            flush=True,
        )
        return EXIT_UNSUPPORTED
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
