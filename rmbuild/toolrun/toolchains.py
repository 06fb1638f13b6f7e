"""Toolchains: the environments vendor tools run in, identified by what is installed in them.

Vendor SDKs pin conflicting packages, so a profile names a toolchain and the tool runs inside
that toolchain's environment as a subprocess. rmbuild's own environment is the toolchain
``main``; a vendor's own install is registered by pointing a toolchain file at its Python. The
toolchain's identity (Python version + the versions of the packages it declares) enters every
action key of the stages that run in it, so upgrading an SDK invalidates as data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from rmbuild.config import search_path
from rmbuild.errors import SpecError, ToolNotFound
from rmbuild.yamlio import did_you_mean, line_of, load_yaml, validate

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile


class SystemTool(BaseModel):
    """A program outside Python a toolchain's tools need, e.g. a cross gcc."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="What it is called in messages, e.g. aarch64-linux-gnu-gcc.")
    check: list[str] = Field(
        min_length=1,
        description="A command that exits 0 when the tool is present (first word looked up "
        "on the system PATH the tools get), e.g. [aarch64-linux-gnu-gcc, --version].",
    )
    debian: str | None = Field(None, description="The Debian/Ubuntu package providing it.")
    hint: str = Field("", description="How to get it, where no package manager line fits.")

    def install_hint(self) -> str:
        if self.debian:
            return f"sudo apt-get install -y {self.debian}"
        return self.hint or f"install {self.name}"


class Toolchain(BaseModel):
    """A pinned set of packages in one Python environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    python: str | None = Field(
        None, description="Interpreter of the environment; null = the one running rmbuild."
    )
    packages: list[str] = Field(default_factory=list, description="Packages that identify it.")
    extra: str | None = Field(None, description="rmbuild extra that installs it (for hints).")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed environment for every tool of this toolchain (e.g. LD_LIBRARY_PATH "
        "of a vendor install); enters the key.",
    )
    key_env: list[str] = Field(
        default_factory=list,
        description="Caller environment variables passed through to its tools; their values "
        "enter the key.",
    )
    runtime_env: list[str] = Field(
        default_factory=list,
        description="Caller environment variables passed through to its tools that cannot "
        "change an artifact (licence server, thread count); never in the key. Any other "
        "caller variable is withheld from the tools.",
    )
    # Provisioning: rmbuild creates the environment itself from these.
    lock: str | None = Field(
        None,
        description="A pinned lock (pip requirements: exact versions, --hash where the "
        "registry gives them), relative to this file. With it and no `python`, `rmbuild "
        "toolchain install NAME` provisions a venv of its own under the data dir; its digest "
        "enters the identity.",
    )
    requires_python: str | None = Field(
        None, description="Python version constraint for the provisioned venv, e.g. '==3.11.*'."
    )
    system_tools: list[SystemTool] = Field(
        default_factory=list, description="Programs outside Python its tools need."
    )
    probe: str | None = Field(
        None,
        description="Python code run once in the environment after install; it prints a "
        "JSON object of identity facts (e.g. compiler revisions), which enters the identity.",
    )
    # Where it was loaded from (file, line of `python:`), for messages about its interpreter.
    _source: tuple[str, int | None] | None = PrivateAttr(None)

    @field_validator("lock")
    @classmethod
    def _lock_only_when_provisioned(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("python"):
            raise ValueError(
                "a toolchain is either provisioned (lock) or registered (python), not both"
            )
        return value

    @property
    def provisioned(self) -> bool:
        """rmbuild creates and owns this environment (``toolchain install``)."""
        return self.lock is not None and self.python is None

    @field_validator("key_env", "runtime_env")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @property
    def python_path(self) -> Path:
        if self.provisioned:
            from rmbuild.toolrun import provision

            return provision.env_dir(self.name) / "bin" / "python"
        return Path(self.python).expanduser() if self.python else Path(sys.executable)

    @property
    def bin_dir(self) -> Path:
        return self.python_path.parent

    @property
    def prefix(self) -> Path:
        """The environment's root (the folder above bin/): relative ``tool.files`` globs
        are resolved here."""
        return self.bin_dir.parent

    def install_hint(self) -> str:
        if self.provisioned:
            return f"rmbuild toolchain install {self.name}"
        if self.extra:
            return f"pip install 'rmbuild[{self.extra}]'"
        return f"install the tools of toolchain {self.name!r} into {self.python_path.parent}"

    def which(self, tool: str) -> Path:
        """Find ``tool`` in this toolchain's bin dir (or take it as a path).

        Not on PATH: another install found there would run while the key records this
        toolchain's versions.
        """
        if os.sep in tool:
            path = Path(tool)
            if path.is_file() and os.access(path, os.X_OK):
                return path
        elif found := shutil.which(tool, path=str(self.bin_dir)):
            return Path(found)
        raise ToolNotFound(
            f"{tool!r} is not installed in toolchain {self.name!r}",
            tool=tool,
            hint=f"{self.install_hint()}; looked in {self.bin_dir}",
        )

    def identity(self) -> dict[str, object]:
        """What identifies this toolchain in a key: Python version and package versions.

        A provisioned toolchain's identity is read from its install marker (lock digest,
        Python, installed versions, probe facts): no process starts on a cache hit.
        """
        if self.provisioned:
            from rmbuild.toolrun import provision

            return provision.identity(self)
        return self._ask(tuple(self.packages))

    def _ask(self, packages: tuple[str, ...]) -> dict[str, object]:
        """Identity facts of ``packages``: read in this process for ``main``, else from the
        toolchain's own interpreter, checked to be a Python first, run isolated (``-I``) in
        the toolchain's scrubbed environment."""
        if self.python is None:
            return _identity_here(packages, self.name)
        from rmbuild.toolrun.toolenv import tool_env

        env = tuple(sorted(tool_env(None, self, None).items()))
        return _identity_of(self.python_path, packages, self.name, env, self._source)

    def check_uses(self, profile: BuildProfile, file: Path | str | None = None) -> None:
        """Every package the profile's tool may invoke must be one of this toolchain's
        packages, so that its version is in the toolchain's identity and keys the stage
        (``optimum-cli --slim`` ran onnxslim, whose version keyed nothing)."""
        missing = [pkg for pkg in profile.tool.uses if pkg not in self.packages]
        if missing:
            raise SpecError(
                f"profile {profile.name!r} uses {', '.join(missing)}, which toolchain "
                f"{self.name!r} does not list in its packages",
                file=file or profile.name,
                field="tool.uses",
                context=[f"packages of {self.name}: {', '.join(self.packages) or 'none'}"],
                hint=f"add them to profiles/toolchains/{self.name}.yaml, so that their "
                "versions enter the key",
            )

    def package_version(self, package: str) -> str | None:
        """The version of one package in this environment (a declared one or any other)."""
        packages = self.identity()["packages"]
        assert isinstance(packages, dict)
        if package in packages:
            return packages[package]
        if self.provisioned:
            from rmbuild.toolrun import provision

            return provision.installed_version(self, package)
        other = self._ask((package,))
        return other["packages"][package]  # type: ignore[index]


_PROBE = (
    "import json,sys,importlib.metadata as m\n"
    "def v(p):\n"
    "    try: return m.version(p)\n"
    "    except m.PackageNotFoundError: return None\n"
    "print(json.dumps({'python': '%d.%d.%d' % sys.version_info[:3],"
    " 'packages': {p: v(p) for p in sys.argv[1:]}}))\n"
)


# `python`, `python3`, `python3.11`: what a toolchain's interpreter (or its link target) is named.
PYTHON_NAME = re.compile(r"python[0-9.]*")
# Executable formats an interpreter may have (ELF; Mach-O 32/64-bit, both byte orders, and
# universal). A `#!` script is not one: a wrapper runs whatever it names.
_BINARY_MAGIC = (
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)
_VERSION_LINE = re.compile(r"Python (\d+)\.(\d+)")


def interpreter_problem(python: Path) -> str | None:
    """Why rmbuild will not run Python code through ``python`` (None: it may), decided
    without running it; a missing file is not judged here (it is "not installed").

    It must be named like a Python (``python[0-9.]*``: the path's own name or, for a link,
    its target's) and be an executable binary, not a script: ``python: /bin/sh`` would run
    the identity probe's source as shell code, a wrapper script named python whatever it
    names. :func:`_identity_of` also asks it ``-V`` before any code goes through it.
    """
    if not python.exists():
        return None
    resolved = python.resolve()
    if not (PYTHON_NAME.fullmatch(python.name) or PYTHON_NAME.fullmatch(resolved.name)):
        return f"{python} is not named like a Python interpreter (python, python3, python3.X)"
    if not resolved.is_file() or not os.access(resolved, os.X_OK):
        return f"{python} is not an executable file"
    try:
        with open(resolved, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"{python} cannot be read ({exc.strerror or exc})"
    if head not in _BINARY_MAGIC:
        what = "a script" if head.startswith(b"#!") else "not an executable binary"
        return f"{python} is {what}, not a Python interpreter"
    return None


def _not_python(name: str, python: Path, problem: str, source: tuple | None) -> SpecError:
    file, line = source if source else (None, None)
    return SpecError(
        f"toolchain {name!r}: {problem}",
        file=file or f"toolchain {name}",
        line=line,
        field="python",
        hint="point `python:` at the environment's interpreter itself (e.g. <venv>/bin/python; "
        "`python -c 'import sys; print(sys.executable)'` prints it), not a wrapper or a shell",
    )


@cache
def _identity_here(packages: tuple[str, ...], name: str) -> dict[str, object]:
    """``main``'s identity, read in this process from the packages its tools will see: the
    path without the caller's ``PYTHONPATH`` entries and the user site (the tools run with
    neither), so a package put on PYTHONPATH cannot enter the identity."""
    import importlib.metadata as md
    import site

    drop = {os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    drop.add(os.path.abspath(site.getusersitepackages()))
    path = [p for p in sys.path if p and os.path.abspath(p) not in drop]

    def version(pkg: str) -> str | None:
        dist = next(iter(md.distributions(name=pkg, path=path)), None)
        return None if dist is None else dist.version

    versions = {p: version(p) for p in packages}
    py = ".".join(str(part) for part in sys.version_info[:3])
    return {"name": name, "python": py, "packages": dict(sorted(versions.items()))}


@cache
def _identity_of(
    python: Path,
    packages: tuple[str, ...],
    name: str,
    env: tuple[tuple[str, str], ...],
    source: tuple[str, int | None] | None,
) -> dict[str, object]:
    """Another environment's identity, asked of its own interpreter (two short processes:
    ``-V`` to know it is a Python, then the probe)."""
    from rmbuild.toolrun.toolenv import python_argv, run_probe

    if (problem := interpreter_problem(python)) is not None:
        raise _not_python(name, python, problem, source)
    try:
        version = run_probe([str(python), "-I", "-V"], dict(env), timeout=60)
        said = (version.stdout + version.stderr).strip()
        if version.returncode != 0 or not _VERSION_LINE.match(said):
            raise _not_python(
                name, python, f"{python} -V did not answer like a Python ({said[:80]!r})", source
            )
        done = run_probe(python_argv(python, _PROBE, *packages), dict(env), timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolNotFound(
            f"toolchain {name!r}: its Python {python} does not run "
            f"({getattr(exc, 'strerror', None) or type(exc).__name__})",
            tool=str(python),
        ) from None
    try:
        if done.returncode != 0:
            raise ValueError
        data = json.loads(done.stdout.strip().splitlines()[-1])
        versions, py = data["packages"], data["python"]
    except (ValueError, IndexError, KeyError, TypeError):
        raise ToolNotFound(
            f"toolchain {name!r}: its Python {python} could not report its packages "
            f"(exit code {done.returncode})",
            tool=str(python),
            tail=done.stderr.strip().splitlines()[-10:],
        ) from None
    return {"name": name, "python": py, "packages": dict(sorted(versions.items()))}


def _files(start: Path | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in search_path("profiles", start):
        for path in sorted((folder / "toolchains").glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def find_toolchain(name: str, start: Path | None = None, *, file: Path | None = None) -> Toolchain:
    """Load toolchain ``name`` from ``profiles/toolchains/NAME.yaml`` (project, user, built-in).

    ``file`` is the profile that names it: an unknown name is reported at that file's
    ``toolchain:`` line, with the closest known name.
    """
    files = _files(start)
    if name not in files:
        line = None
        if file is not None:
            try:
                line = line_of(load_yaml(file)[1], ("toolchain",))
            except SpecError:
                line = None  # the profile loaded a moment ago; without its line, still its name
        raise SpecError(
            f"no toolchain named {name!r}{did_you_mean(name, files)}",
            file=file,
            line=line,
            field="toolchain",
            context=[f"toolchains found: {', '.join(sorted(files)) or 'none'}"],
            hint="add profiles/toolchains/<name>.yaml (python: path to its interpreter)",
        )
    data, lines = load_yaml(files[name])
    toolchain = validate(Toolchain, data, files[name], lines)
    if toolchain.lock is not None:
        # The lock lives next to its toolchain file; keep its absolute path.
        lock = (files[name].parent / toolchain.lock).resolve()
        if not lock.is_file():
            raise SpecError(
                f"toolchain {name!r}: lock file {toolchain.lock!r} not found",
                file=files[name],
                line=line_of(lines, ("lock",)),
                field="lock",
            )
        toolchain = toolchain.model_copy(update={"lock": str(lock)})
    if toolchain.python is not None:
        # Checked before anything runs through it (the identity probe is Python source).
        toolchain._source = (str(files[name]), line_of(lines, ("python",)))
        if (problem := interpreter_problem(toolchain.python_path)) is not None:
            raise _not_python(name, toolchain.python_path, problem, toolchain._source)
    return toolchain


def list_toolchains(start: Path | None = None) -> list[Toolchain]:
    return [find_toolchain(name, start) for name in sorted(_files(start))]
