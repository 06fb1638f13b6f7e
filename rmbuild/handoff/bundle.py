"""What every handoff bundle shares: the plan an engine module makes of an artifact (read
from the store by :mod:`rmbuild.handoff.artifact`), and writing that plan into a folder.

Each engine module (``triton``, ``vllm``, ``vllm_rbln``, ``furiosa_llm``, ``ray_serve``) has
the same skeleton: ``ENGINE``, ``TITLE``, ``plan(artifacts, options) -> Plan`` (decides the
files, the command and the pins, refusing what the engine cannot load) and ``check(root) ->
list[str]`` (validates the written folder with the engine's own code or schema where it is
installed, else with its documented contract; returns what was checked). This module writes a
plan: the engine's files, ``serve.sh`` (the exact command), ``README.md`` and
``versions.json`` (what the serving side must run), into a folder built beside the destination
and renamed into place only after ``check`` accepted it, so a bundle is whole or absent.

Files that come from the store are read-only hard links to its blobs (copies across
filesystems), as ``rmbuild checkout`` lays them out; files of the user's own model folder are
copied (a hard link would tie their inode, and their mode, to the bundle).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild import __version__
from rmbuild.errors import DestinationNotEmpty

if TYPE_CHECKING:
    from rmbuild.handoff.artifact import Artifact

FORMAT = 1
SERVE_SH = "serve.sh"
README = "README.md"
VERSIONS = "versions.json"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Rel:
    """A path inside the bundle, in a command: ``"$here/PATH"`` in ``serve.sh``."""

    path: str


Arg = str | Rel


@dataclass
class Command:
    """The command that starts the engine on the bundle. ``env`` is set before it (shown in
    ``serve.sh`` with ``${NAME:-default}`` so the caller may override it)."""

    argv: list[Arg]
    env: dict[str, str] = field(default_factory=dict)
    # Where the engine's own launcher may not be on PATH, the same arguments through an
    # interpreter a variable names (``VLLM_PYTHON=... serve.sh``): (variable, argv prefix).
    alternative: tuple[str, list[Arg]] | None = None

    def resolved(self, root: Path) -> list[str]:
        """The argv with bundle paths made absolute under ``root`` (for a caller that starts
        the engine itself rather than through ``serve.sh``)."""
        return [str(root / a.path) if isinstance(a, Rel) else a for a in self.argv]

    def display(self) -> str:
        """The command as the README shows it, run from the bundle folder."""
        return " ".join(_quote(a, "./") for a in self.argv)

    def flags(self) -> dict[str, str]:
        """``--flag value`` pairs of the argv (what tests and versions.json compare)."""
        out: dict[str, str] = {}
        args = [a.path if isinstance(a, Rel) else a for a in self.argv]
        for i, arg in enumerate(args):
            if arg.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
                out[arg] = args[i + 1]
        return out


def _quote(arg: Arg, here: str) -> str:
    if isinstance(arg, Rel):
        rel = arg.path.rstrip("/")
        if here == "$here/":
            return f'"$here/{rel}"' if rel not in ("", ".") else '"$here"'
        return f"./{rel}" if rel not in ("", ".") else "."
    return shlex.quote(arg)


@dataclass(frozen=True)
class Link:
    """A file of the store's copy of the artifact, hard-linked into the bundle."""

    source: Path


@dataclass(frozen=True)
class Copy:
    """A file from outside the store (the user's model folder), copied into the bundle."""

    source: Path


FileSource = Link | Copy | bytes | str


@dataclass
class Plan:
    """What an engine module decided: files, command, limits and pins, README text."""

    engine: str
    title: str
    name: str  # the model's name as the engine serves it
    artifacts: list[Artifact]
    files: dict[str, FileSource]
    command: Command
    limits: dict[str, Any]
    serving: dict[str, Any]  # what the serving side must run (engine release, SDK versions)
    readme: list[str]  # engine-specific paragraphs (markdown)
    hardware: str  # what only the engine's hardware can show
    executable: set[str] = field(default_factory=set)  # relpaths to mark executable
    warnings: list[str] = field(default_factory=list)  # what the user must know before serving
    extra_versions: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportOptions:
    """What ``rmbuild export`` takes beyond the artifact and the engine."""

    name: str | None = None  # the served model name (default: the model's)
    max_model_len: int | None = None  # lower the context limit the command sets
    replicas: int = 1  # Ray Serve
    num_cpus: float | None = None  # Ray Serve, CPU targets
    port: int = 8000


# --------------------------------------------------------------------------- writing


def check_destination(dest: Path) -> None:
    """Refuse (exit 2) a destination that exists and is not an empty folder."""
    if not os.path.lexists(dest):
        return
    if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
        return
    raise DestinationNotEmpty(
        f"{dest} exists and is not an empty folder; export does not overwrite",
        hint="give a new or empty folder, or remove this one first",
    )


def write(plan: Plan, dest: Path, check: Callable[[Path], list[str]]) -> list[str]:
    """Write ``plan`` into ``dest`` (which must not exist or be empty): built in a sibling
    folder, validated there by ``check`` and renamed into place. Returns what ``check``
    checked. A failing check leaves nothing at ``dest``."""
    dest = dest.absolute()
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.export-{os.getpid()}"
    if os.path.lexists(staging):
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        for rel, source in sorted(plan.files.items()):
            _place(source, staging / rel)
        for rel in plan.executable:
            _executable(staging / rel)
        (staging / SERVE_SH).write_text(serve_script(plan), encoding="utf-8")
        _executable(staging / SERVE_SH)
        checked = check(staging)
        (staging / VERSIONS).write_text(
            json.dumps(versions(plan, staging, checked), indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        (staging / README).write_text(readme(plan, checked), encoding="utf-8")
        if os.path.lexists(dest):
            dest.rmdir()  # empty (checked above)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return checked


def _place(source: FileSource, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        target.write_bytes(source)
    elif isinstance(source, str):
        target.write_text(source, encoding="utf-8")
    elif isinstance(source, Link):
        try:
            os.link(source.source, target)
        except OSError:
            # Another filesystem (or no hard links): a copy, read-only like the store's.
            shutil.copyfile(source.source, target)
            target.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    else:
        shutil.copyfile(source.source, target)


def _executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def serve_script(plan: Plan) -> str:
    """``serve.sh``: the engine's command on this folder, extra arguments appended."""
    cmd = plan.command
    lines = [
        "#!/usr/bin/env bash",
        f"# Starts {plan.title} on this bundle: {plan.name} from rmbuild artifact "
        f"{plan.artifacts[0].key[:12]} ({plan.artifacts[0].model}:{plan.artifacts[0].target}).",
        "# Written by `rmbuild export`; the flags match the artifact's limits (README.md,",
        "# versions.json). Extra arguments are passed on to the engine.",
        "set -euo pipefail",
        'here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
    ]
    for name, value in sorted(cmd.env.items()):
        lines.append(f'export {name}="${{{name}:-{value}}}"')
    main = " ".join(_quote(a, "$here/") for a in cmd.argv)
    if cmd.alternative is not None:
        var, prefix = cmd.alternative
        # The same arguments after the engine's own launcher name (argv[0], or argv[0:2] for
        # `vllm serve`): the alternative prefix replaces it.
        rest = cmd.argv[_launcher_len(cmd.argv) :]
        alt = " ".join(_quote(a, "$here/") for a in [*prefix, *rest])
        lines += [
            f'if [ -n "${{{var}:-}}" ]; then',
            f'  exec "${var}" {alt} "$@"',
            "fi",
        ]
    lines.append(f'exec {main} "$@"')
    return "\n".join(lines) + "\n"


def _launcher_len(argv: list[Arg]) -> int:
    # `vllm serve MODEL`: the launcher is two words and the model a --model flag elsewhere.
    if len(argv) > 1 and argv[0] == "vllm" and argv[1] == "serve":
        return 2
    return 1


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of each file under ``root`` (bundle-relative paths), for versions.json."""
    import hashlib

    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in (VERSIONS, README):
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            out[path.relative_to(root).as_posix()] = digest.hexdigest()
    return out


def versions(plan: Plan, root: Path, checked: list[str]) -> dict[str, Any]:
    """``versions.json``: the artifact(s), what built them, what the serving side must run,
    the limits the command sets, the command, what export checked, each file's digest."""
    return {
        "format": FORMAT,
        "engine": plan.engine,
        "name": plan.name,
        "rmbuild": __version__,
        "artifacts": [a.describe() for a in plan.artifacts],
        "built_with": {a.key: a.built_with() for a in plan.artifacts},
        "serving": plan.serving,
        "limits": plan.limits,
        "command": [a.path if isinstance(a, Rel) else a for a in plan.command.argv],
        "env": plan.command.env,
        "checked": checked,
        "warnings": plan.warnings,
        "files": file_digests(root),
        **plan.extra_versions,
    }


def readme(plan: Plan, checked: list[str]) -> str:
    """``README.md``: what the bundle is, the command, the limits, the pins, what was
    checked and what only the engine's hardware can show."""
    first = plan.artifacts[0]
    lines = [
        f"# {plan.name}: a {plan.title} bundle",
        "",
        f"Written by `rmbuild export --to {plan.engine}` from artifact `{first.key}` "
        f"({first.model}:{first.target}, {first.backend}).",
        "",
        "## Start it",
        "",
        "```bash",
        "./serve.sh            # from this folder; extra arguments go to the engine",
        "```",
        "",
        "which runs:",
        "",
        "```bash",
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(plan.command.env.items())),
        plan.command.display(),
        "```",
        "",
        *(f"**Warning:** {w}\n" for w in plan.warnings),
        "## Limits the command keeps to",
        "",
        *(f"- `{k}`: {v}" for k, v in plan.limits.items()),
        "",
        *plan.readme,
        "",
        "## What the serving side must run",
        "",
        "`versions.json` pins it (`serving`), with the toolchain that built the artifact "
        "(`built_with`) and each file's sha256 (`files`).",
        "",
        "```json",
        json.dumps(plan.serving, indent=2, sort_keys=True),
        "```",
        "",
        "## Checked when exported",
        "",
        *(f"- {line}" for line in checked),
        "",
        "## Needs the hardware",
        "",
        plan.hardware,
        "",
    ]
    return "\n".join(lines)
