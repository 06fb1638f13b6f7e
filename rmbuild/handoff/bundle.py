"""What every handoff bundle shares: the artifact as read from the store, the plan an engine
module makes of it, and writing that plan into a folder.

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
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild import __version__
from rmbuild.errors import DestinationNotEmpty, IncompatibleArtifact
from rmbuild.runtime import kvlayout, limits

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store

FORMAT = 1
SERVE_SH = "serve.sh"
README = "README.md"
VERSIONS = "versions.json"


# --------------------------------------------------------------------------- the artifact


@dataclass
class Artifact:
    """A stored artifact laid out read-only (``tree``), with what the engines read of it."""

    record: ArtifactRecord
    tree: Path
    files: dict[str, str]  # relpath -> sha256, from the manifest
    store: Store

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def metadata(self) -> dict[str, Any]:
        return self.record.metadata

    @property
    def backend(self) -> str:
        return self.record.backend

    @property
    def model(self) -> str:
        return self.record.model

    @property
    def target(self) -> str:
        return self.record.target

    @property
    def flags(self) -> dict[str, Any]:
        return dict(self.metadata.get("flags") or {})

    @property
    def fingerprint(self) -> dict[str, Any]:
        return dict(self.metadata.get("fingerprint") or {})

    @property
    def packages(self) -> dict[str, str]:
        """The toolchain's package versions the artifact was built with."""
        return dict((self.metadata.get("toolchain") or {}).get("packages") or {})

    @property
    def label(self) -> str:
        return f"{self.model}:{self.target} ({self.key[:12]}, {self.backend})"

    def read_json(self, rel: str) -> dict[str, Any] | None:
        """A JSON file of the artifact, or None where it has none (or it is not an object)."""
        if rel not in self.files:
            return None
        try:
            data = json.loads((self.tree / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def config(self) -> dict[str, Any]:
        return self.read_json("config.json") or {}

    def layout(self) -> kvlayout.KVLayout | None:
        """The graph's inputs as the build recorded them (``kv_layout.json``), where it did."""
        data = self.read_json(kvlayout.SIDECAR)
        if data is None:
            return None
        try:
            return kvlayout.KVLayout.from_json(data)
        except (ValueError, KeyError, TypeError):
            return None

    def resource(self) -> str:
        """The device class of the profile that made it (npu, gpu, cpu, ...; "any" unknown)."""
        from rmbuild.errors import RmbuildError
        from rmbuild.profiles import find_profile

        name = self.metadata.get("profile")
        spec = self.metadata.get("spec_file")
        start = Path(spec).parent if isinstance(spec, str) else None
        try:
            return find_profile(str(name), start).profile.resource if name else "any"
        except RmbuildError:
            return "any"

    def compiled_bound(self) -> limits.Bound | None:
        """The longest context the artifact's files fix, read without loading a runtime: the
        same facts the backends' ``compiled_limit()`` read (RBLN's ``max_seq_len``, RNGD's and
        TensorRT's build flags, a static ``attention_mask`` in ``kv_layout.json``)."""
        bounds: list[limits.Bound] = []
        rbln = self.read_json("rbln_config.json")
        if rbln is not None and isinstance(rbln.get("max_seq_len"), int):
            bounds.append(
                limits.Bound(
                    int(rbln["max_seq_len"]),
                    "max_seq_len in rbln_config.json",
                    "rebuild with a larger max_seq_len flag",
                )
            )
        flags = self.flags
        if self.backend == "furiosa" and isinstance(flags.get("max_model_len"), int):
            bounds.append(
                limits.Bound(
                    int(flags["max_model_len"]),
                    "max_model_len flag of the RNGD build",
                    "rebuild with a larger max_model_len flag and buckets",
                )
            )
        if self.backend == "tensorrt" and isinstance(flags.get("max_seq"), int):
            # The shape profile's max unless all three shapes were given by hand (then the
            # plan, not the flag, knows; the layout's answer below still applies).
            if not flags.get("max_shapes"):
                bounds.append(
                    limits.Bound(
                        int(flags["max_seq"]),
                        "max_seq flag of the TensorRT build (its shape profile)",
                        "rebuild with a larger max_seq flag",
                    )
                )
        layout = self.layout()
        mask = layout.spec("attention_mask") if layout is not None else None
        if mask is not None and len(mask.shape) == 2 and mask.shape[1] is not None:
            bounds.append(
                limits.Bound(
                    int(mask.shape[1]),
                    f"attention_mask is {mask.describe()} in {kvlayout.SIDECAR}",
                    "convert the graph with a longer (or dynamic) sequence dim",
                )
            )
        return min(bounds, key=lambda b: b.value) if bounds else None

    def context_limit(self, requested: int | None = None) -> limits.ContextLimit:
        """The limit a server of this artifact must keep to (see :mod:`rmbuild.runtime.limits`);
        ``requested`` lowers it (IncompatibleArtifact, exit 6, where it cannot be had)."""
        return limits.resolve(self.config, self.compiled_bound(), requested)

    def describe(self) -> dict[str, Any]:
        """The artifact as ``versions.json`` names it."""
        md = self.metadata
        return {
            "id": self.key,
            "model": self.model,
            "target": self.target,
            "profile": md.get("profile"),
            "backend": self.backend,
            "manifest": self.record.manifest_digest,
            "built_at": self.record.created_at.astimezone(UTC).isoformat(),
            "rmbuild": md.get("rmbuild_version"),
        }

    def built_with(self) -> dict[str, Any]:
        """The toolchain, tool and fingerprint the artifact was built with."""
        md = self.metadata
        tool = md.get("tool") or {}
        return {
            "toolchain": md.get("toolchain") or {},
            "tool": {k: tool[k] for k in ("name", "package", "version") if k in tool},
            "fingerprint": self.fingerprint,
        }


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


def artifact_json(art: Artifact) -> str:
    """The artifact's record as a small JSON file for a bundle's own code to read."""
    md = art.metadata
    keep = ("backend", "profile", "target", "model", "flags", "runtime_flags", "fingerprint")
    return json.dumps(
        {"id": art.key, **{k: md.get(k) for k in keep}}, indent=1, sort_keys=True, default=str
    )


def refuse_len(art: Artifact, requested: int | None, what: str) -> None:
    """Refuse (exit 6) an explicit ``--max-model-len`` an engine would override anyway."""
    bound = art.compiled_bound()
    if requested is not None and bound is not None and requested != bound.value:
        raise IncompatibleArtifact(
            f"--max-model-len {requested}: {what} takes the compiled length {bound.value} "
            f"({bound.source}) and no other",
            hint=f"drop --max-model-len, or rebuild the artifact for {requested} tokens",
        )


def only_one(artifacts: list[Artifact], engine: str) -> Artifact:
    """The one artifact an engine's bundle holds (UsageError, exit 2, for several)."""
    from rmbuild.errors import UsageError

    if len(artifacts) != 1:
        raise UsageError(
            f"--to {engine} takes one artifact, not {len(artifacts)}",
            context=[a.label for a in artifacts],
            hint="export each to a folder of its own (only --to triton merges TensorRT plans "
            "of one model built for several GPUs)",
        )
    return artifacts[0]


def refuse(art: Artifact, engine: str, why: str, instead: str) -> None:
    """Refuse (EngineRefused, exit 2) an artifact ``engine`` cannot load."""
    from rmbuild.errors import EngineRefused

    raise EngineRefused(f"--to {engine}: artifact {art.label}: {why}", hint=instead)


def engines_for(backend: str) -> list[str]:
    """The engines whose bundles take an artifact of ``backend`` (for refusals' hints)."""
    table = {
        "onnxruntime": ["triton", "ray-serve", "vllm"],
        "openvino": ["triton", "ray-serve", "vllm"],
        "tensorrt": ["triton", "ray-serve", "vllm"],
        "iree": ["ray-serve", "vllm"],
        "rbln": ["vllm-rbln", "ray-serve", "vllm"],
        "furiosa": ["furiosa-llm", "vllm"],
    }
    return table.get(backend, ["ray-serve", "vllm"])


# numpy dtype names (kv_layout.json) -> the names vLLM's --dtype takes.
VLLM_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def precision(art: Artifact) -> str | None:
    """The dtype the artifact computes in: its KV cache's (the graph's own), else what
    config.json says (``torch_dtype``, or ``dtype`` in newer transformers)."""
    layout = art.layout()
    if layout is not None and layout.past:
        name = layout.past[0].dtype
        if name in VLLM_DTYPES:
            return VLLM_DTYPES[name]
    rbln = art.read_json("rbln_config.json") or {}
    if isinstance(rbln.get("dtype"), str) and rbln["dtype"] in VLLM_DTYPES:
        return rbln["dtype"]
    config = art.config
    value = config.get("torch_dtype") or config.get("dtype")
    return VLLM_DTYPES.get(str(value)) if value else None
