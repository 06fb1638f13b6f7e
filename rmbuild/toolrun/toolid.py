"""A tool's identity in the action key: what runs, by content, not by name.

A vendor compiler edited in place, or another binary installed at the same path, used to be a
cache hit: a tool without a ``package`` was keyed by its name only. Two layers now (sccache's
compiler detection):

* a tool with a ``package`` is keyed by that distribution's version (and the toolchain's
  identity); a shipped ``script`` by the script's digest;
* any other tool by the sha256 of its executable, and, for a ``#!`` script, of its interpreter
  too (through ``/usr/bin/env NAME``, resolved on the tool's own PATH), a few levels deep;
* in addition, for any tool, the digests of the files its profile declares in ``tool.files``
  (shared libraries, data files; globs relative to the toolchain's prefix, or absolute), and
  the output of its ``tool.version_command``, run in the tool's scrubbed environment without a
  shell, with a timeout, once per process.

Digests come from the store's stat cache when the build passes its hasher
(``Store.hash_files``: keyed by path, inode, mtime and size), so an unchanged multi-MB
compiler is not re-read on every build; paths never enter the key, contents do.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rmbuild.declare.spec import BuildProfile
from rmbuild.errors import ToolError, ToolNotFound
from rmbuild.toolrun.toolchains import Toolchain
from rmbuild.toolrun.toolenv import tool_env
from rmbuild.toolrun.toolproc import TAIL_LINES, supervised

Hasher = Callable[[list[Path]], Mapping[Path, str]]

MAX_INTERPRETERS = 4  # Linux itself follows at most a few levels of #! scripts
VERSION_TIMEOUT_S = 60.0

_digests: dict[tuple[str, int, int, int], str] = {}
_versions: dict[tuple[object, ...], str] = {}


def local_hasher(paths: list[Path]) -> dict[Path, str]:
    """sha256 of each file, cached in this process by (path, inode, mtime, size)."""
    out: dict[Path, str] = {}
    for path in paths:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_ino, st.st_mtime_ns, st.st_size)
        if key not in _digests:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            _digests[key] = digest.hexdigest()
        out[path] = _digests[key]
    return out


def _one(hasher: Hasher, path: Path) -> str:
    return hasher([path])[path]


def interpreters(executable: Path, search_path: str) -> list[Path]:
    """The interpreters a ``#!`` script runs under, outermost last (empty for a binary)."""
    chain: list[Path] = []
    current = executable
    for _ in range(MAX_INTERPRETERS):
        try:
            with open(current, "rb") as f:
                head = f.read(512)
        except OSError:
            break
        if not head.startswith(b"#!"):
            break
        words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
        if not words:
            break
        program = words[0]
        if os.path.basename(program) == "env":
            # `#!/usr/bin/env [-S] [VAR=x] NAME ...`: what runs is NAME, found on the PATH the
            # tool gets (toolchain bin dir + system dirs), as env itself will find it.
            rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
            if not rest:
                break
            found = shutil.which(rest[0], path=search_path)
            if found is None:
                raise ToolNotFound(
                    f"{executable} runs under {rest[0]!r}, which is not on its PATH",
                    tool=str(executable),
                    hint=f"looked in {search_path}",
                )
            program = found
        interpreter = Path(program)
        if not interpreter.is_file():
            raise ToolNotFound(
                f"{executable} names the interpreter {program}, which does not exist",
                tool=str(executable),
            )
        chain.append(interpreter)
        current = interpreter
    return chain


def identity_files(profile: BuildProfile, toolchain: Toolchain) -> dict[str, Path]:
    """``tool.files`` matched: a label (relative to the prefix, or the absolute path) -> file.

    A pattern that matches nothing is an error: a declared identity must not silently drop
    out of the key.
    """
    found: dict[str, Path] = {}
    prefix = toolchain.prefix
    for pattern in profile.tool.files:
        expanded = os.path.expanduser(pattern)
        absolute = os.path.isabs(expanded)
        full = expanded if absolute else os.path.join(glob.escape(str(prefix)), expanded)
        matches = sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p))
        if not matches:
            raise ToolNotFound(
                f"profile {profile.name!r}: tool.files pattern {pattern!r} matches no file",
                tool=profile.tool.name,
                hint=f"relative patterns are looked up under the toolchain's prefix {prefix}",
            )
        for match in matches:
            label = match if absolute else os.path.relpath(match, prefix)
            found[Path(label).as_posix()] = Path(match)
    return found


def version_output(profile: BuildProfile, toolchain: Toolchain) -> str:
    """The output of ``tool.version_command`` (cached per process while the tool is unchanged)."""
    command = list(profile.tool.version_command or [])
    executable = toolchain.which(command[0])
    st = os.stat(executable)
    cache_key = (
        str(executable),
        st.st_ino,
        st.st_mtime_ns,
        st.st_size,
        tuple(command[1:]),
        # Without the per-run TMPDIR (a TMPDIR the profile sets itself still counts).
        tuple(sorted(tool_env(profile, toolchain, None).items())),
    )
    if cache_key in _versions:
        return _versions[cache_key]
    argv = [str(executable), *command[1:]]
    with tempfile.TemporaryDirectory(prefix="rmbuild-version-") as tmp:
        # Under the supervisor too: a version command that hangs is killed with its children.
        proc = subprocess.run(  # noqa: S603 - argv from the profile, no shell
            supervised(argv, timeout=VERSION_TIMEOUT_S),
            cwd=tmp,
            env=tool_env(profile, toolchain, Path(tmp)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    output = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise ToolError(
            f"the version command of profile {profile.name!r} ({' '.join(command)}) failed "
            f"with exit code {proc.returncode} (or ran past {VERSION_TIMEOUT_S:g} s)",
            tool=command[0],
            tail=output.splitlines()[-TAIL_LINES:],
        )
    _versions[cache_key] = output
    return output


def tool_identity(
    profile: BuildProfile,
    toolchain: Toolchain,
    *,
    script: Path | None,
    hasher: Hasher | None = None,
) -> dict[str, Any]:
    """The ``tool`` part of the action key for ``profile``'s tool."""
    hasher = hasher or local_hasher
    tool: dict[str, Any] = {"name": profile.tool.name}
    if profile.tool.package:
        tool["package"] = profile.tool.package
        tool["version"] = toolchain.package_version(profile.tool.package)
    if script is not None:
        tool["script_sha256"] = _one(hasher, script)
    elif not profile.tool.package:
        executable = toolchain.which(profile.tool.name)
        tool["sha256"] = _one(hasher, executable)
        search = tool_env(profile, toolchain, None)["PATH"]
        if chain := interpreters(executable, search):
            tool["interpreters_sha256"] = [_one(hasher, path) for path in chain]
    if profile.tool.files:
        files = identity_files(profile, toolchain)
        digests = hasher(list(files.values()))
        tool["files"] = {label: digests[path] for label, path in sorted(files.items())}
    if profile.tool.version_command:
        tool["version_output"] = version_output(profile, toolchain)
    return tool
