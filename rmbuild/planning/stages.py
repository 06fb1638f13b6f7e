"""Planning a target and keying its stages: model.yaml target -> chain of stages -> action keys.

A target names a profile; the profile's ``depends_on`` links it to the stage that makes its
input (e.g. ``onnxruntime-cpu`` <- ``onnx-export``), so a build is a small DAG shared across
targets through the cache. :func:`plan` resolves that chain with each stage's effective flags;
:func:`action_key` builds the key object of one stage from its input digests (the upstream
artifact's manifest digest chains the keys, Merkle-style). Running the stages is
:mod:`rmbuild.build`'s job; this module runs no tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from rmbuild.credentials import warn_flags
from rmbuild.declare import sources
from rmbuild.declare.profiles import find_profile
from rmbuild.declare.spec import BuildProfile, FlagValue, LoadedProfile, LoadedSpec
from rmbuild.errors import SpecError, UnknownTarget
from rmbuild.keys import ActionKey
from rmbuild.plugins import get_backend
from rmbuild.toolrun.adapter import _FORBIDDEN as FORBIDDEN_IN_VALUES  # one list, two checks
from rmbuild.toolrun.adapter import BinaryCompilerAdapter
from rmbuild.toolrun.toolchains import Toolchain, find_toolchain
from rmbuild.toolrun.toolenv import key_env
from rmbuild.toolrun.toolid import Hasher, tool_identity
from rmbuild.yamlio import did_you_mean, line_of, load_yaml

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.backends.base import BackendPlugin

MAX_CHAIN = 16


@dataclass(frozen=True)
class PlannedStage:
    """One stage of a target's build, with its effective flags."""

    loaded: LoadedProfile
    toolchain: Toolchain
    flags: dict[str, FlagValue]

    @property
    def profile(self) -> BuildProfile:
        return self.loaded.profile

    @cached_property
    def plugin(self) -> BackendPlugin:
        """The stage's backend plugin, asked of the registry once: its fingerprint (the key),
        the checks before the chain runs, the flags it derives and the outputs it prepares all
        go through this one."""
        return get_backend(self.profile.backend)

    def keyed_flags(self) -> dict[str, FlagValue]:
        return {k: v for k, v in self.flags.items() if k not in self.profile.runtime_flags}

    def runtime_flags(self) -> dict[str, FlagValue]:
        return {k: v for k, v in self.flags.items() if k in self.profile.runtime_flags}


# ----------------------------------------------------------------------------- planning


def _merge_flags(
    loaded: LoadedProfile, overrides: dict[str, FlagValue], spec: LoadedSpec, loc: tuple
) -> dict[str, FlagValue]:
    profile = loaded.profile
    unknown = [name for name in overrides if name not in profile.flags]
    if unknown:
        name = unknown[0]
        raise SpecError(
            f"profile {profile.name!r} has no flag {name!r}",
            file=spec.path,
            line=line_of(spec.lines, (*loc, name)),
            field=".".join(map(str, (*loc, name))),
            context=[f"flags of {profile.name}: {', '.join(sorted(profile.flags)) or 'none'}"],
        )
    # A value with a line break would split into two arguments of the rendered argv (one per
    # line); refuse it here, where model.yaml's line is known. The adapter's
    # check stays as the backstop for values that come from elsewhere (the API).
    for name, value in overrides.items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, str) and any(ch in item for ch in FORBIDDEN_IN_VALUES):
                at = (*loc, name, i) if isinstance(value, list) else (*loc, name)
                raise SpecError(
                    f"flag value cannot contain line breaks or NUL characters (got {item!r})",
                    file=spec.path,
                    line=line_of(spec.lines, at),
                    field=".".join(map(str, (*loc, name))),
                    hint="the template renders one argument a line, so a line break would "
                    "smuggle in arguments of its own",
                )
    for name, value in profile.flags.items():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(i, str) and any(c in i for c in FORBIDDEN_IN_VALUES) for i in items):
            raise SpecError(
                "flag default cannot contain line breaks or NUL characters",
                file=loaded.path,
                field=f"flags.{name}",
            )
    # A token in a flag is stored in plain text with the key: warn, naming where it was set.
    warn_flags(overrides, spec.path, lambda name: line_of(spec.lines, (*loc, name)))
    defaults = {k: v for k, v in profile.flags.items() if k not in overrides}
    warn_flags(defaults, loaded.path, lambda name: _profile_line(loaded.path, name))
    return {**profile.flags, **overrides}


def _profile_line(path: Path, name: str) -> int | None:
    """The line of ``flags.NAME`` in a profile file (read again: only for a warning)."""
    try:
        return line_of(load_yaml(path)[1], ("flags", name))
    except SpecError:
        return None


def plan(spec: LoadedSpec, target_name: str) -> list[PlannedStage]:
    """The chain of stages for ``target_name``, source-side first."""
    targets = spec.spec.targets
    if target_name not in targets:
        raise UnknownTarget(
            f"no target named {target_name!r}{did_you_mean(target_name, targets)}",
            file=spec.path,
            field="targets",
            context=[f"targets: {', '.join(targets)}"],
        )
    target = targets[target_name]
    chain: list[PlannedStage] = []
    name: str | None = target.profile
    line = line_of(spec.lines, ("targets", target_name, "profile"))
    while name is not None:
        if len(chain) >= MAX_CHAIN or any(s.profile.name == name for s in chain):
            raise SpecError(
                f"profile {name!r} depends on itself (a cycle in depends_on)",
                file=spec.path,
                line=line,
            )
        loaded = find_profile(name, spec.root, file=spec.path, line=line)
        if chain:  # an upstream stage: overrides come from targets.<t>.stages.<profile>
            override = target.stages.get(name)
            flags = _merge_flags(
                loaded,
                override.flags if override else {},
                spec,
                ("targets", target_name, "stages", name, "flags"),
            )
        else:
            flags = _merge_flags(loaded, target.flags, spec, ("targets", target_name, "flags"))
        toolchain = find_toolchain(loaded.profile.toolchain, spec.root, file=loaded.path)
        first = not chain
        chain.append(PlannedStage(loaded, toolchain, flags))
        line = None
        name = loaded.profile.depends_on
        if first and target.depends_on is not None:
            name = target.depends_on
            line = line_of(spec.lines, ("targets", target_name, "depends_on"))
        elif loaded.profile.input_format == spec.spec.source.format:
            name = None  # the source already is this stage's input (e.g. an ONNX folder)
    chain.reverse()
    upstream_names = {stage.profile.name for stage in chain[:-1]}
    for name in target.stages:
        if name not in upstream_names:
            raise SpecError(
                f"target {target_name!r} has no upstream stage {name!r}",
                file=spec.path,
                line=line_of(spec.lines, ("targets", target_name, "stages", name)),
                field=f"targets.{target_name}.stages.{name}",
                context=[f"its upstream stages: {', '.join(sorted(upstream_names)) or 'none'}"],
            )
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        if upstream.profile.output_format != downstream.profile.input_format:
            raise SpecError(
                f"profile {downstream.profile.name!r} takes {downstream.profile.input_format!r} "
                f"but {upstream.profile.name!r} makes {upstream.profile.output_format!r}",
                file=downstream.loaded.path,
                field="depends_on",
            )
    first = chain[0].profile
    if first.input_format != spec.spec.source.format:
        raise SpecError(
            f"profile {first.name!r} takes {first.input_format!r} input but the source is "
            f"{spec.spec.source.format!r}",
            file=spec.path,
            line=line_of(spec.lines, ("source", "format")),
            field="source.format",
        )
    return chain


# ----------------------------------------------------------------------------- keys


def source_digest(spec: LoadedSpec, store: Store) -> str:
    """Content digest of the model source (stat-cached file digests); refuses unsafe links."""
    return sources.source_digest(spec, store)


def action_key(
    stage: PlannedStage,
    inputs: dict[str, str],
    start: Path | None,
    hasher: Hasher | None = None,
) -> ActionKey:
    """Build the key object for one stage from its input digests.

    ``hasher`` digests the tool's files (``Store.hash_files``: stat-cached); without it they
    are hashed with a per-process cache.
    """
    profile = stage.profile
    # Every package the tool may invoke is in the toolchain's identity.
    stage.toolchain.check_uses(profile, stage.loaded.path)
    adapter = BinaryCompilerAdapter(profile, stage.toolchain, start)
    rendered = adapter.render_for_key(stage.flags, sorted(inputs))
    toolchain_id = stage.toolchain.identity()
    # What runs, by content: executable, interpreter, declared files, version.
    tool = tool_identity(profile, stage.toolchain, script=adapter.script_path(), hasher=hasher)
    fingerprint = stage.plugin.fingerprint(profile, dict(stage.flags), stage.toolchain)
    return ActionKey(
        inputs=inputs,
        stage=profile.stage,
        backend=profile.backend,
        profile=profile.name,
        flags=stage.keyed_flags(),
        argv=rendered.argv,
        configs=rendered.configs,
        tool=tool,
        toolchain=toolchain_id,
        fingerprint=fingerprint,
        carry=sorted(profile.carry),
        # Fixed env values and key_env pass-throughs; never runtime_env.
        env=key_env(profile, stage.toolchain),
    )
