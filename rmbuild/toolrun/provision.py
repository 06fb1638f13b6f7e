"""Provisioned toolchain environments: a venv per toolchain under the user data dir.

Vendor SDKs pin conflicting packages (furiosa-llm 2026.4 needs torch 2.10, optimum-onnx
transformers < 4.58), so a toolchain file may declare a pinned ``lock`` and rmbuild creates an
isolated venv for it: ``rmbuild toolchain install NAME``. The install is safe to interrupt and
to rerun:

* it builds in ``<data>/toolchains/.partial-NAME`` and renames the finished venv to
  ``<data>/toolchains/NAME`` only when complete; the marker file (``rmbuild-toolchain.json``:
  lock digest, Python, installed versions, probe facts, size) is written before the rename, so
  a folder without it is never used; a rerun deletes a leftover partial folder first;
* one install or removal of a toolchain at a time (an flock beside it);
* venv scripts carry the absolute path of the venv's Python in their ``#!`` line, so the
  prefix is rewritten from the partial path to the final one before the rename.

Identity = lock digest + Python version + installed versions (+ the toolchain's probe facts),
all read from the marker: a cache hit starts no process in the environment. A lock edited
since the install makes the environment stale: it is refused until reinstalled, so an edited
lock changes the identity and the keys, never silently serves the old install.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.errors import BackendUnavailable, SpecError, ToolError

if TYPE_CHECKING:
    from rmbuild.toolrun.toolchains import SystemTool, Toolchain

DATA_ENV = "RMBUILD_DATA_DIR"
MARKER = "rmbuild-toolchain.json"
MARKER_VERSION = 1
PARTIAL_PREFIX = ".partial-"

# All installed distributions with their versions, and the interpreter's version.
_LIST = (
    "import json,sys,importlib.metadata as m\n"
    "print(json.dumps({'python': '%d.%d.%d' % sys.version_info[:3], 'packages': "
    "{d.metadata['Name'].lower().replace('_','-'): d.version for d in m.distributions() "
    "if d.metadata['Name']}}))\n"
)


def data_dir() -> Path:
    """``$RMBUILD_DATA_DIR``, else the user data dir (e.g. ``~/.local/share/rmbuild``)."""
    if env := os.environ.get(DATA_ENV):
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("rmbuild", appauthor=False))


def toolchains_dir() -> Path:
    return data_dir() / "toolchains"


def env_dir(name: str) -> Path:
    """Where toolchain ``name``'s venv lives once installed."""
    return toolchains_dir() / name


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_digest(toolchain: Toolchain) -> str:
    """sha256 of the lock file's bytes (a hand edit changes it)."""
    assert toolchain.lock is not None
    return hashlib.sha256(Path(toolchain.lock).read_bytes()).hexdigest()


def read_marker(name: str) -> dict[str, Any] | None:
    """The install marker of ``name``, or None when it is not (completely) installed."""
    try:
        data = json.loads((env_dir(name) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == MARKER_VERSION else None


@dataclass(frozen=True)
class Status:
    """Where a toolchain stands on this machine."""

    name: str
    kind: str  # main | registered | provisioned
    installed: bool
    path: Path
    reason: str = ""  # why not usable, when not
    marker: dict[str, Any] = field(default_factory=dict)


def status(toolchain: Toolchain) -> Status:
    """Installed and usable? Never raises for a missing or stale install."""
    if not toolchain.provisioned:
        kind = "registered" if toolchain.python else "main"
        python = toolchain.python_path
        ok = python.exists()
        return Status(
            toolchain.name,
            kind,
            ok,
            toolchain.prefix,
            "" if ok else f"its Python {python} does not exist",
        )
    path = env_dir(toolchain.name)
    marker = read_marker(toolchain.name)
    if marker is None:
        why = "not installed"
        if (toolchains_dir() / f"{PARTIAL_PREFIX}{toolchain.name}").exists():
            why = (
                "not installed (being installed now)"
                if _install_running(toolchain.name)
                else "not installed (an interrupted install was left; rerun install)"
            )
        return Status(toolchain.name, "provisioned", False, path, why)
    if marker.get("lock_sha256") != lock_digest(toolchain):
        return Status(
            toolchain.name,
            "provisioned",
            False,
            path,
            "installed from another lock (the lock changed since); reinstall it",
            marker,
        )
    if not (path / "bin" / "python").exists():
        return Status(toolchain.name, "provisioned", False, path, "its Python is missing", marker)
    return Status(toolchain.name, "provisioned", True, path, "", marker)


def require(toolchain: Toolchain) -> dict[str, Any]:
    """The marker of a usable provisioned toolchain, or BackendUnavailable (exit 7) with the
    command that installs it."""
    st = status(toolchain)
    if not st.installed:
        raise BackendUnavailable(
            f"toolchain {toolchain.name!r} is {st.reason}",
            context=[f"expected at {st.path}"],
            hint=f"rmbuild toolchain install {toolchain.name}",
        )
    return st.marker


def identity(toolchain: Toolchain) -> dict[str, object]:
    """Lock digest + Python + the declared packages' installed versions + probe facts."""
    marker = require(toolchain)
    installed = marker.get("packages", {})
    out: dict[str, object] = {
        "name": toolchain.name,
        "python": marker["python"],
        "packages": {p: installed.get(_norm(p)) for p in sorted(toolchain.packages)},
        "lock": marker["lock_sha256"],
    }
    if marker.get("probe"):
        out["probe"] = marker["probe"]
    return out


def installed_version(toolchain: Toolchain, package: str) -> str | None:
    return require(toolchain).get("packages", {}).get(_norm(package))


# ----------------------------------------------------------------------------- system tools


def missing_system_tools(toolchain: Toolchain) -> list[SystemTool]:
    """The system tools whose check command fails, run in the environment the toolchain's
    tools get (its PATH, scrubbed of the caller's secrets)."""
    from rmbuild.toolrun.toolenv import tool_env

    env = tool_env(None, toolchain, None)
    search = env["PATH"]
    missing = []
    for tool in toolchain.system_tools:
        exe = shutil.which(tool.check[0], path=search)
        if exe is None:
            missing.append(tool)
            continue
        try:
            subprocess.run(  # noqa: S603 - argv from the toolchain file, no shell
                [exe, *tool.check[1:]],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            missing.append(tool)
    return missing


# ----------------------------------------------------------------------------- install


def _python_for(toolchain: Toolchain) -> Path:
    """An interpreter satisfying ``requires_python``: rmbuild's own, else python3.X on PATH."""
    spec = toolchain.requires_python
    if not spec:
        return Path(sys.executable)
    from packaging.specifiers import SpecifierSet

    wanted = SpecifierSet(spec)
    own = ".".join(map(str, sys.version_info[:3]))
    if own in wanted:
        return Path(sys.executable)
    from rmbuild.toolrun.toolenv import base_env, python_argv, run_probe

    for minor in range(20, 7, -1):
        exe = shutil.which(f"python3.{minor}")
        if exe is None:
            continue
        try:
            out = run_probe(
                python_argv(exe, "import sys; print('%d.%d.%d' % sys.version_info[:3])"),
                base_env(),
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out in wanted:
            return Path(exe)
    raise BackendUnavailable(
        f"toolchain {toolchain.name!r} needs Python {spec}; none found (rmbuild runs on {own})",
        hint=f"install a Python {spec} (e.g. with uv python install or pyenv) and put it on PATH",
    )


def _install_running(name: str) -> bool:
    try:
        with open(toolchains_dir() / f".{name}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    root = toolchains_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ToolError(
                f"another rmbuild is installing or removing toolchain {name!r}",
                tool="rmbuild toolchain",
                hint="wait for it to finish, then rerun",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _relocate(partial: Path, final: Path) -> None:
    """Rewrite the venv's absolute prefix in bin/ scripts and pyvenv.cfg (partial -> final)."""
    old, new = str(partial).encode(), str(final).encode()
    candidates = [partial / "pyvenv.cfg", *(partial / "bin").iterdir()]
    for path in candidates:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old not in data or b"\0" in data[:4096]:
            continue  # binaries keep no prefix in a venv; never edit one
        mode = path.stat().st_mode
        path.write_bytes(data.replace(old, new))
        os.chmod(path, mode)


def _run(
    argv: list[str],
    log: Path,
    on_line: Callable[[str], None] | None,
    tool: str,
    bin_dir: Path,
) -> None:
    from rmbuild.toolrun.toolenv import installer_env
    from rmbuild.toolrun.toolproc import run_supervised

    # The installer needs the caller's network settings (proxy, index, certificates), and
    # nothing else of the caller's: an sdist's build backend is code from the registry.
    run_supervised(
        argv,
        cwd=log.parent,
        env=installer_env(bin_dir),
        log_path=log,
        timeout=None,
        tool=tool,
        on_line=on_line,
    )


def _requirements(lock: Path) -> list[str]:
    """The lock's requirement lines (no comments, no continuation-only lines)."""
    lines = [line.split("#", 1)[0].strip() for line in lock.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("--")]


def _installer(python: Path, lock: Path) -> tuple[list[str], str]:
    """uv when present (fast), else rmbuild's own pip aimed at the new venv (--python)."""
    has_hash = "--hash" in lock.read_text()
    if uv := shutil.which("uv"):
        argv = [uv, "pip", "install", "--python", str(python), "-r", str(lock)]
        return ([*argv, "--require-hashes"] if has_hash else argv), "uv"
    argv = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-input",
        "--progress-bar",
        "off",
        "-r",
        str(lock),
    ]
    return ([*argv, "--require-hashes"] if has_hash else argv), "pip"


def _probe(
    python: Path, code: str | None, toolchain: Toolchain
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The new venv's listing, and the toolchain's probe facts: both run isolated (``-I``) in
    the toolchain's scrubbed environment (the probe imports the vendor's native module and may
    run its compiler: it gets what the tools get, not the caller's secrets)."""
    from rmbuild.toolrun.toolenv import python_argv, run_probe, tool_env

    env = tool_env(None, toolchain, None, bin_dir=python.parent)
    out = run_probe(python_argv(python, _LIST), env, timeout=300, check=True).stdout
    listing = json.loads(out)
    facts: dict[str, Any] = {}
    if code:
        try:
            done = run_probe(python_argv(python, code), env, timeout=600, check=True)
            facts = json.loads(done.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            # Never str() of a subprocess error: it quotes the argv, i.e. the probe's source.
            if isinstance(exc, subprocess.CalledProcessError):
                detail = exc.stderr or f"exit code {exc.returncode}"
            elif isinstance(exc, subprocess.TimeoutExpired):
                detail = f"no answer within {exc.timeout:g} s"
            else:
                detail = str(exc)
            raise ToolError(
                "the toolchain's identity probe failed",
                tool="probe",
                tail=str(detail).strip().splitlines()[-10:],
                hint="check the toolchain file's probe code",
            ) from None
    return listing, facts


@dataclass(frozen=True)
class InstallResult:
    name: str
    path: Path
    seconds: float
    size: int
    reused: bool
    missing_tools: list[SystemTool]


def install(
    toolchain: Toolchain,
    *,
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> InstallResult:
    """Create (or keep) the venv of a provisioned toolchain; see the module docstring."""
    if not toolchain.provisioned:
        raise SpecError(
            f"toolchain {toolchain.name!r} is not provisioned by rmbuild (it has no lock, or "
            "points `python:` at an existing environment)",
            field="lock",
            hint="add `lock:` (a pinned requirements file) to its toolchain file to provision it",
        )
    from rmbuild.toolrun.toolenv import base_env, run_probe

    say = on_line or (lambda _line: None)
    t0 = time.monotonic()
    with _locked(toolchain.name):
        final = env_dir(toolchain.name)
        st = status(toolchain)
        if st.installed and not force:
            return InstallResult(
                toolchain.name,
                final,
                0.0,
                int(st.marker.get("size", 0)),
                True,
                missing_system_tools(toolchain),
            )
        partial = toolchains_dir() / f"{PARTIAL_PREFIX}{toolchain.name}"
        if partial.exists():
            say(f"removing an interrupted install at {partial}")
            shutil.rmtree(partial)
        base = _python_for(toolchain)
        say(f"creating a venv with {base}")
        # No pip inside: rmbuild's pip installs into it (--python), which keeps it small.
        run_probe(
            [str(base), "-I", "-m", "venv", "--without-pip", "--prompt", toolchain.name]
            + [str(partial)],
            base_env(),
            timeout=300,
            check=True,
        )
        python = partial / "bin" / "python"
        assert toolchain.lock is not None
        lock = Path(toolchain.lock)
        digest = lock_digest(toolchain)
        argv, installer = _installer(python, lock)
        if _requirements(lock):
            say(f"installing {lock.name} with {installer}")
            log = toolchains_dir() / f".{toolchain.name}.install.log"
            _run(argv, log, on_line, installer, python.parent)
        if lock_digest(toolchain) != digest:
            raise ToolError(
                f"the lock of toolchain {toolchain.name!r} changed during the install",
                tool=installer,
                hint="rerun the install",
            )
        say("reading the installed versions")
        listing, facts = _probe(python, toolchain.probe, toolchain)
        _relocate(partial, final)
        size = _dir_size(partial)
        marker = {
            "version": MARKER_VERSION,
            "name": toolchain.name,
            "lock": str(lock),
            "lock_sha256": digest,
            "python": listing["python"],
            "base_python": str(base),
            "packages": dict(sorted(listing["packages"].items())),
            "probe": facts,
            "installer": installer,
            "size": size,
            "installed_at": datetime.now(UTC).isoformat(),
            "seconds": round(time.monotonic() - t0, 1),
        }
        tmp_marker = partial / f".{MARKER}.tmp"
        with open(tmp_marker, "w") as f:
            json.dump(marker, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_marker, partial / MARKER)
        old = None
        if final.exists():
            old = toolchains_dir() / f".old-{toolchain.name}-{os.getpid()}"
            os.rename(final, old)
        os.rename(partial, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return InstallResult(
        toolchain.name,
        final,
        time.monotonic() - t0,
        size,
        False,
        missing_system_tools(toolchain),
    )


def remove(toolchain: Toolchain) -> bool:
    """Delete a provisioned toolchain's venv (and any interrupted install); True if any."""
    if not toolchain.provisioned:
        raise SpecError(
            f"toolchain {toolchain.name!r} is not provisioned by rmbuild; nothing to remove",
            field="lock",
        )
    with _locked(toolchain.name):
        removed = False
        for path in (
            env_dir(toolchain.name),
            toolchains_dir() / f"{PARTIAL_PREFIX}{toolchain.name}",
        ):
            if path.exists():
                # Marker first: a removal killed halfway leaves a folder nothing will use.
                with contextlib.suppress(FileNotFoundError):
                    (path / MARKER).unlink()
                shutil.rmtree(path)
                removed = True
    return removed
