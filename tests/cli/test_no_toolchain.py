"""`--help`, `ls`, `show`, `info`, `backends` work on a machine with no toolchain installed.

The child interpreter runs with ``-S`` (no site-packages) and a sys.path that holds only rmbuild
and its core dependencies (linked into a temp dir from this venv), so torch, onnxruntime,
openvino, iree, numpy and tokenizers are truly absent, as on a fresh machine without extras.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "torch",
    "onnxruntime",
    "openvino",
    "iree",
    "numpy",
    "tokenizers",
    "transformers",
    "onnx",
    "optimum",
)


def _core_distributions() -> set[str]:
    """rmbuild's runtime requirements, transitively, ignoring extras."""
    seen: set[str] = set()
    todo = ["rmbuild"]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            marker = req.split(";", 1)[1] if ";" in req else ""
            if "python_version" in marker and '< "3' in marker:
                continue
            todo.append(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0])
    return seen


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    for name in _core_distributions() - {"rmbuild"}:
        dist = md.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (site / top).exists() and top != "..":
                (site / top).symlink_to(src)
    # rmbuild itself from the checkout, with its entry points (the editable install's metadata).
    for top in ("rmbuild", "artifact_store"):
        (site / top).symlink_to(REPO / top)
    info = Path(md.distribution("rmbuild")._path)  # type: ignore[attr-defined]
    (site / info.name).symlink_to(info)
    return site


def test_core_commands_need_no_toolchain(tmp_path: Path) -> None:
    site = _site(tmp_path)
    for heavy in HEAVY:
        assert not (site / heavy).exists(), f"{heavy} leaked into the minimal environment"
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[1]]\n"
        "from rmbuild.cli import main\n"
        "args = json.loads(sys.argv[2])\n"
        "rc = main(args)\n"
        f"leaked = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print('LEAKED=' + ','.join(leaked), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = {
        "RMBUILD_STORE": str(tmp_path / "store"),
        "RMBUILD_CONFIG_DIR": str(tmp_path / "cfg"),
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", "-c", code, str(site), json.dumps(args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    for args in (
        ["--help"],
        ["ls"],
        ["ls", "--json"],
        ["info"],
        ["backends", "--json"],
        ["profiles"],
        ["schema"],
    ):
        result = run(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "LEAKED=\n" in result.stderr or result.stderr.endswith("LEAKED=\n"), result.stderr
        assert "Traceback" not in result.stderr

    backends = {b["name"]: b for b in json.loads(run("backends", "--json").stdout)}
    assert not backends["onnxruntime"]["available"]
    assert "rmbuild[onnx]" in backends["onnxruntime"]["install"]
    assert "rmbuild[openvino]" in backends["openvino"]["install"]
    assert "rmbuild[iree]" in backends["iree"]["install"]


@pytest.mark.parametrize("args", [["show", "abcd"], ["run", "--artifact", "abcd"]])
def test_missing_artifacts_are_clear_without_toolchains(tmp_path: Path, args: list[str]) -> None:
    site = _site(tmp_path)
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[1]]\n"
        "from rmbuild.cli import main; sys.exit(main(json.loads(sys.argv[2])))\n"
    )
    env = {"RMBUILD_STORE": str(tmp_path / "store"), "RMBUILD_CONFIG_DIR": str(tmp_path / "cfg")}
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site), json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 5, result.stderr
    assert "no artifact matches" in result.stderr and "Traceback" not in result.stderr
