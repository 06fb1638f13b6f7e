"""Build the VN-series "SDK" from its C sources with gcc: ``python build_sdk.py --prefix DIR``.

The vendor of a real NPU ships these as binaries; here they are built from source so that the
example runs anywhere gcc does. It writes ``DIR/bin/vnpuc`` (the compiler),
``DIR/lib/libvnpu.so`` (the runtime) and ``DIR/include/vnpu.h`` (its header). With ``DIR`` the
virtual environment rmbuild runs in, the ``vnpu`` toolchain finds the compiler in its bin/ and
the plugin finds the runtime in its lib/ (or set ``VNPU_LIBRARY`` to the .so).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]


def build(prefix: Path, cc: str = "gcc") -> dict[str, Path]:
    """Compile the compiler and the runtime into ``prefix``; returns what was written."""
    out = {
        "compiler": prefix / "bin" / "vnpuc",
        "runtime": prefix / "lib" / "libvnpu.so",
        "header": prefix / "include" / "vnpu.h",
    }
    for path in out.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    # Never through a shell: each command is an argument list.
    subprocess.run(
        [cc, *CFLAGS, "-o", str(out["compiler"]), str(HERE / "vnpuc.c"), "-lm"], check=True
    )
    subprocess.run(
        [
            cc,
            *CFLAGS,
            "-fPIC",
            "-shared",
            "-o",
            str(out["runtime"]),
            str(HERE / "vnpu_runtime.c"),
            "-lm",
        ],
        check=True,
    )
    shutil.copyfile(HERE / "vnpu.h", out["header"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix))
    parser.add_argument("--cc", default="gcc")
    args = parser.parse_args()
    for what, path in build(args.prefix.resolve(), args.cc).items():
        print(f"{what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
