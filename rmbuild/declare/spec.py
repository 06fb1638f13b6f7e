"""The declarative inputs: ModelSpec (``model.yaml``) and BuildProfile (``profiles/*.yaml``).

Both are pydantic models with ``extra="forbid"`` so that a typo is an error naming the field and
its line, not a silently ignored setting. ``rmbuild schema`` emits their JSON Schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rmbuild.yamlio import load_yaml, validate

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
FlagValue = str | int | float | bool | None | list[str | int | float | bool]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- ModelSpec


class Source(_Strict):
    """Where the model comes from: a folder (``path``), or a Hugging Face hub repo pinned to a
    commit (``hub`` + ``revision``), resolved in the hub's local cache."""

    path: str | None = Field(None, description="The model's folder, relative to model.yaml.")
    hub: str | None = Field(
        None,
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="A Hugging Face hub repo (org/name), instead of path: read from the hub's "
        "cache (HF_HUB_CACHE / HF_HOME; fetched there unless HF_HUB_OFFLINE is set).",
    )
    revision: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="The hub commit (40 hex digits) to build from. A branch or tag moves, so "
        "a build from one is refused unless `compile --allow-unpinned`.",
    )
    format: Literal["hf", "onnx"] = Field(
        "hf",
        description="hf: a Hugging Face folder; onnx: a folder with model.onnx (KV-cache "
        "export), config.json and tokenizer files. Stages whose input the source already is "
        "are skipped.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Source:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of path (a folder) or hub (org/name)")
        if self.revision is not None and self.hub is None:
            raise ValueError("revision is for a hub source (hub: org/name)")
        if self.revision is not None and ".." in self.revision.split("/"):
            raise ValueError(f"revision {self.revision!r} is not a ref name")
        return self


class StageOverride(_Strict):
    """Flag overrides for an upstream stage of a target (e.g. the ONNX export)."""

    flags: dict[str, FlagValue] = Field(default_factory=dict)


class Target(_Strict):
    """One named way to build the model: a profile plus overrides of its flags."""

    profile: str = Field(description="Name of a BuildProfile (profiles/*.yaml).")
    flags: dict[str, FlagValue] = Field(
        default_factory=dict, description="Overrides of the profile's flags."
    )
    stages: dict[str, StageOverride] = Field(
        default_factory=dict,
        description="Overrides for upstream stages, by profile name (e.g. onnx-export).",
    )
    depends_on: str | None = Field(
        None,
        description="Replace the profile's input stage, e.g. insert a graph pass (onnxslim) "
        "between the export and the compile.",
    )
    description: str = ""


ResourceClass = Literal["npu", "gpu", "cpu", "pim", "remote", "any"]


class ServePolicy(_Strict):
    """How ``rmbuild serve`` and ``rmbuild.load(NAME)`` pick among the model's artifacts."""

    order: list[ResourceClass] | None = Field(
        None,
        min_length=1,
        description="Device classes in preference order (default: npu, gpu, cpu, remote). "
        "The first class with an artifact that loads here serves; the others are the "
        "fallback, in order. A class not listed is never served.",
    )

    @field_validator("order")
    @classmethod
    def _once_each(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            twice = sorted({c for c in value if value.count(c) > 1})
            if twice:
                raise ValueError(f"each class may appear once; repeated: {', '.join(twice)}")
        return value


class ModelSpec(_Strict):
    """``model.yaml``: a logical model, its source and its targets."""

    name: str = Field(pattern=NAME_RE, description="Logical model name applications ask for.")
    source: Source
    task: Literal["text-generation"] = "text-generation"
    targets: dict[str, Target] = Field(min_length=1)
    serve: ServePolicy | None = Field(
        None, description="Serving policy: which device classes serve the model, in order."
    )

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, Target]) -> dict[str, Target]:
        for name in value:
            if not re.match(NAME_RE, name):
                raise ValueError(f"target name {name!r} must match {NAME_RE}")
        return value


class LoadedSpec(BaseModel):
    """A ModelSpec with the file it came from (for paths and error messages)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: ModelSpec
    path: Path
    lines: dict[Any, int] = Field(default_factory=dict, repr=False)
    # Where the model source was laid out when that is not where model.yaml says: a bundle
    # unpacked on a Ray node (rmbuild.build.executors.shipping); sources.source_path reads it.
    bundle_source: Path | None = Field(None, repr=False)

    @property
    def root(self) -> Path:
        return self.path.parent


def load_model_spec(path: str | Path) -> LoadedSpec:
    """Read and validate a ``model.yaml``; errors name file, line and field."""
    path = Path(path).resolve()
    data, lines = load_yaml(path)
    spec = validate(ModelSpec, data, path, lines)
    return LoadedSpec(spec=spec, path=path, lines=lines)


# --------------------------------------------------------------------------- BuildProfile


class ToolSpec(_Strict):
    """The black-box tool a profile runs."""

    name: str = Field(description="Executable name, looked up in the toolchain's bin dir.")
    package: str | None = Field(
        None, description="Distribution whose version identifies the tool (importlib.metadata)."
    )
    script: str | None = Field(
        None,
        description="A helper script shipped with rmbuild (rmbuild/tools/NAME.py) that is the "
        "tool; its digest enters the key.",
    )
    uses: list[str] = Field(
        default_factory=list,
        description="Other distributions the tool may run or import, depending on flags (e.g. "
        "onnxslim for optimum-cli --slim). Each must be one of the toolchain's packages, so "
        "that its version keys the stage.",
    )
    files: list[str] = Field(
        default_factory=list,
        description="Extra files that identify the tool (shared libraries, data files): globs "
        "relative to the toolchain's prefix, or absolute; their digests enter the key.",
    )
    version_command: list[str] | None = Field(
        None,
        min_length=1,
        description="A command whose output identifies the tool, e.g. [iree-compile, "
        "--version]; its first word is found like tool.name. Run without a shell, in the "
        "tool's environment, with a timeout; its output enters the key.",
    )


class BuildProfile(_Strict):
    """One way to produce one artifact kind from one input format."""

    name: str = Field(pattern=NAME_RE)
    description: str = ""
    resource: Literal["cpu", "gpu", "npu", "pim", "remote", "any"] = "any"
    backend: str = Field(description="Backend plugin that loads the artifact.")
    stage: Literal["export", "graph-pass", "compile"] = "compile"
    interface: Literal["cli", "c-api", "python", "config-file"] = "cli"
    input_format: str
    output_format: str
    depends_on: str | None = Field(
        None, description="Profile whose artifact is this stage's input (the DAG edge)."
    )
    toolchain: str = Field(
        description="Toolchain (profiles/toolchains/NAME.yaml) the tool runs in."
    )
    tool: ToolSpec
    template: str = Field(description="Jinja template rendering the argv, one argument a line.")
    configs: dict[str, str] = Field(
        default_factory=dict,
        description="Config files to render before running: relative path -> template.",
    )
    flags: dict[str, FlagValue] = Field(default_factory=dict, description="Flags and defaults.")
    runtime_flags: list[str] = Field(
        default_factory=list,
        description="Flags that change how the tool or the session runs but not the artifact; "
        "they are excluded from the action key.",
    )
    compiler_cache: str | None = Field(
        None,
        description="The runtime flag that takes the vendor compiler's cache folder. While it "
        "is null, rmbuild keeps the cache as a keyed artifact of its own (key: the compiler's "
        "identity), fed to each build at <workdir>/compiler-cache and updated from it.",
    )
    outputs: list[str] = Field(min_length=1, description="Glob patterns the tool must leave.")
    carry: list[str] = Field(
        default_factory=list,
        description="Files copied from the input into the artifact (tokenizer, config).",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment for the tool.")
    key_env: list[str] = Field(
        default_factory=list,
        description="Caller environment variables passed through to the tool; their values "
        "enter the key.",
    )
    runtime_env: list[str] = Field(
        default_factory=list,
        description="Caller environment variables passed through to the tool that cannot "
        "change the artifact (a licence server, a thread count); they never enter the key. "
        "Any other caller variable is withheld from the tool.",
    )
    timeout: float = Field(3600, gt=0, description="Seconds before the tool is killed.")

    @field_validator("outputs", "carry", "configs")
    @classmethod
    def _relative_paths(cls, value: Any, info: Any) -> Any:
        # Output/carry patterns and config files are resolved inside the stage's folders (the
        # output dir, the input dir, the work dir); none may reach outside them.
        for rel in value:  # a list of patterns, or the configs' relative paths (dict keys)
            if rel.startswith(("/", "~")) or ".." in Path(rel).parts:
                if info.field_name == "configs":
                    raise ValueError(f"config path {rel!r} must stay inside the work dir")
                raise ValueError(f"{rel!r} must be a relative path inside the stage's folder")
        return value

    @field_validator("key_env", "runtime_env")
    @classmethod
    def _env_names(cls, value: list[str], info: Any) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        keyed = info.data.get("key_env", []) if info.field_name == "runtime_env" else []
        both = set(value) & set(keyed)
        if both:
            raise ValueError(f"{sorted(both)} cannot be both keyed (key_env) and runtime-only")
        return value

    @field_validator("runtime_flags")
    @classmethod
    def _known_runtime_flags(cls, value: list[str], info: Any) -> list[str]:
        flags = info.data.get("flags", {})
        unknown = [name for name in value if name not in flags]
        if unknown:
            raise ValueError(f"runtime_flags names flags the profile does not have: {unknown}")
        return value


class LoadedProfile(BaseModel):
    """A BuildProfile with the file it came from."""

    model_config = ConfigDict(frozen=True)

    profile: BuildProfile
    path: Path


def load_profile(path: Path) -> LoadedProfile:
    """Read and validate one profile file."""
    data, lines = load_yaml(path)
    return LoadedProfile(profile=validate(BuildProfile, data, path, lines), path=path)
