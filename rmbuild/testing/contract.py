"""The checks of the backend contract, as plain functions over a :class:`BackendContract`.

Each ``check_*`` returns None when the backend keeps that part of the contract, raises
:class:`ContractFailure` saying what it broke, or :class:`ContractSkip` saying why the part
cannot be checked here (no toolchain to build with, no runtime to load with). The checks that
need an artifact take a :class:`Built` (one build, shared by all of them: real builds are the
expensive part).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, hook_names
from rmbuild.errors import IncompatibleArtifact, RmbuildError, SessionClosed

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store
    from rmbuild.declare.spec import LoadedProfile, LoadedSpec

# A value no template may split or hand to a shell: if it reaches the argv, it is one argument.
HOSTILE = "x; rm -rf ~ $(id) `id` | cat && echo"
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "cmd", "cmd.exe", "pwsh"}


class ContractFailure(AssertionError):
    """The backend breaks one part of the contract (the message says which and how)."""


class ContractSkip(Exception):
    """One part of the contract cannot be checked on this machine (the message says why)."""


@dataclass
class BackendContract:
    """What the kit needs to check one backend.

    ``backend`` is the entry-point name. ``model_yaml`` and ``target`` name a target whose
    last stage this backend builds: without them only the parts that need no build run.
    ``incompatible`` turns the metadata of an artifact built here into one this host must
    refuse (a SKU absent here, a runtime from the future): the kit checks the refusal is
    IncompatibleArtifact, exit 6. ``reference_tokens`` (optional) are the greedy ids the
    session must generate for ``prompt``. ``bad_options`` are load options this backend must
    refuse with exit 6 (an absent device).
    """

    backend: str
    model_yaml: Path | None = None
    target: str | None = None
    prompt: str = "The future of AI is"
    max_tokens: int = 8
    incompatible: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    reference_tokens: list[int] | None = None
    bad_options: dict[str, Any] | None = None
    # Profiles of this backend whose templates are rendered (default: every one found).
    profiles: list[str] | None = None


@dataclass
class Built:
    """The target built once into a store of its own."""

    store: Store
    spec: LoadedSpec
    record: ArtifactRecord
    folder: Path
    keys: list[str] = field(default_factory=list)


def plugin_of(contract: BackendContract) -> BackendPlugin:
    """The installed plugin, loaded through its entry point as rmbuild loads it."""
    from rmbuild.plugins import registry

    entry = registry().get(contract.backend)
    if entry is None:
        raise ContractFailure(
            f"no backend {contract.backend!r} in the entry-point group rmbuild.backends; "
            f"installed: {', '.join(sorted(registry())) or 'none'}"
        )
    if entry.plugin is None:
        raise ContractFailure(f"backend {contract.backend!r} fails to load: {entry.error}")
    return entry.plugin


# ---- parts that need no build ------------------------------------------------------------------


def check_interface(contract: BackendContract) -> None:
    """The class sets ``name`` to its entry-point name, defines no public method or attribute
    outside the declared hooks (a misspelt or invented hook would never be called: keep
    helpers private or at module level), and each hook it overrides takes the hook's
    arguments."""
    plugin = plugin_of(contract)
    cls = type(plugin)
    if plugin.name != contract.backend:
        raise ContractFailure(
            f"{cls.__name__}.name is {plugin.name!r}, its entry point is {contract.backend!r}"
        )
    from rmbuild.plugins import _own_public_names

    hooks = hook_names()
    extra = [n for n in _own_public_names(cls) if n not in hooks]
    if extra:
        raise ContractFailure(
            f"{cls.__name__} defines {', '.join(extra)}, which BackendPlugin does not declare; "
            f"hooks: {', '.join(sorted(hooks))}"
        )
    for name in hooks:
        base = getattr(BackendPlugin, name)
        mine = getattr(cls, name)
        if not callable(base) or mine is base:
            continue
        wanted = [p for p in inspect.signature(base).parameters.values() if p.name != "self"]
        try:
            inspect.signature(mine).bind(plugin, *[None] * len(wanted))
        except TypeError as exc:
            raise ContractFailure(
                f"{cls.__name__}.{name} cannot take the hook's arguments "
                f"({', '.join(p.name for p in wanted)}): {exc}"
            ) from None


def check_availability(contract: BackendContract) -> Availability:
    """``availability()`` never raises and returns an Availability; where the backend is
    unavailable it says why and what installs it; where available, its versions are text."""
    plugin = plugin_of(contract)
    try:
        avail = plugin.availability()
    except Exception as exc:
        raise ContractFailure(f"availability() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(avail, Availability):
        raise ContractFailure(f"availability() returned {avail!r}, not an Availability")
    if not avail.ok and not (avail.reason.strip() and avail.install.strip()):
        raise ContractFailure(
            "availability() says unavailable without a reason and an install line "
            f"(reason={avail.reason!r}, install={avail.install!r})"
        )
    if avail.ok and not all(isinstance(v, str) for v in avail.versions.values()):
        raise ContractFailure(f"availability().versions must be text: {avail.versions!r}")
    try:
        plugin.probe()
    except Exception as exc:
        raise ContractFailure(f"probe() raised {type(exc).__name__}: {exc}") from exc
    return avail


def backend_profiles(contract: BackendContract, start: Path | None = None) -> list[LoadedProfile]:
    """The profiles of this backend on the search path (its package's included)."""
    from rmbuild.declare.profiles import list_profiles

    found = []
    for loaded in list_profiles(start):
        if isinstance(loaded, RmbuildError):
            continue
        if loaded.profile.backend != contract.backend:
            continue
        if contract.profiles is None or loaded.profile.name in contract.profiles:
            found.append(loaded)
    return found


def check_templates(contract: BackendContract) -> None:
    """Every profile of the backend loads, names a toolchain that exists, declares outputs,
    and its template renders an argv that no shell runs: a list of arguments whose first is
    not a shell, in which a hostile flag value stays one literal argument."""
    from rmbuild.toolrun.adapter import BinaryCompilerAdapter
    from rmbuild.toolrun.toolchains import find_toolchain

    start = contract.model_yaml.parent if contract.model_yaml else None
    profiles = backend_profiles(contract, start)
    if not profiles:
        raise ContractFailure(
            f"no profile with backend: {contract.backend} on the search path; ship one in "
            "the package's resources (entry-point group rmbuild.resources)"
        )
    for loaded in profiles:
        profile = loaded.profile
        if not profile.outputs:
            raise ContractFailure(f"profile {profile.name} declares no outputs")
        toolchain = find_toolchain(profile.toolchain, start, file=loaded.path)
        adapter = BinaryCompilerAdapter(profile, toolchain, start)
        roles = ["model"]
        rendered = adapter.render_for_key(dict(profile.flags), roles)
        _check_argv(profile.name, rendered.argv)
        for name, value in profile.flags.items():
            if not isinstance(value, str) or name in profile.runtime_flags:
                continue
            argv = adapter.render_for_key({**profile.flags, name: HOSTILE}, roles).argv
            _check_argv(profile.name, argv)
            split = [a for a in argv if a in HOSTILE.split() and a not in rendered.argv]
            if split:
                raise ContractFailure(
                    f"profile {profile.name}: flag {name}={HOSTILE!r} was split into several "
                    f"arguments: {argv}"
                )


def _check_argv(profile: str, argv: list[str]) -> None:
    if not argv or not all(isinstance(a, str) and a for a in argv):
        raise ContractFailure(f"profile {profile}: the template rendered {argv!r}")
    first = Path(argv[0].removeprefix("<tool:").removesuffix(">")).name
    if first in SHELLS or (len(argv) > 1 and argv[1] in ("-c", "/c") and first in SHELLS):
        raise ContractFailure(
            f"profile {profile}: the command runs a shell ({argv[:3]}); render the tool's "
            "own argv, one argument a line"
        )


def _plan(contract: BackendContract) -> tuple[LoadedSpec, list[Any]]:
    if contract.model_yaml is None or contract.target is None:
        raise ContractSkip("no model_yaml/target given: the key and build checks need one")
    from rmbuild.declare.spec import load_model_spec
    from rmbuild.planning.stages import plan

    spec = load_model_spec(contract.model_yaml)
    chain = plan(spec, contract.target)
    if chain[-1].profile.backend != contract.backend:
        raise ContractFailure(
            f"target {contract.target}'s last stage is built by backend "
            f"{chain[-1].profile.backend}, not {contract.backend}"
        )
    return spec, chain


def check_probe_facts_in_key(contract: BackendContract) -> None:
    """The backend's fingerprint (what it probes of the target hardware or compiler) is
    JSON, the same when asked twice, is what the stage's action key holds, and a different
    fact gives a different key."""
    from rmbuild.errors import ToolError
    from rmbuild.planning.stages import action_key

    spec, chain = _plan(contract)
    plugin = plugin_of(contract)
    for index, stage in enumerate(chain):
        if stage.profile.backend != contract.backend:
            continue
        inputs = {"model": f"{index:064d}"}  # an upstream's digest: any will do for the key
        try:
            key = action_key(stage, inputs, spec.root)
        except ToolError as exc:
            raise ContractSkip(f"the stage's tool is not here to key: {exc.message}") from None
        args = (stage.profile, dict(stage.flags), stage.toolchain)
        facts = plugin.fingerprint(*args)
        try:
            json.dumps(facts, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ContractFailure(f"fingerprint() is not JSON: {exc}") from None
        if plugin.fingerprint(*args) != facts:
            raise ContractFailure("fingerprint() differs between two calls on one host")
        if key.fingerprint != facts:
            raise ContractFailure(f"the key holds {key.fingerprint}, fingerprint() {facts}")
        moved = dataclasses.replace(key, fingerprint={**facts, "contract": "other"})
        if moved.compute() == key.compute():
            raise ContractFailure("a different fingerprint fact gives the same key")


# ---- parts that need the artifact ------------------------------------------------------------


def build(contract: BackendContract, root: Path | None = None) -> Built:
    """Build the contract's target into a new store under ``root`` (a temp dir by default).

    ContractSkip where a stage's toolchain or tool is missing here (the build's own exit 7
    or tool-not-found message is the reason)."""
    from artifact_store import Store
    from rmbuild.build import build as build_target
    from rmbuild.errors import BackendUnavailable, ToolNotFound

    spec, chain = _plan(contract)
    root = Path(root or tempfile.mkdtemp(prefix="rmbuild-contract-"))
    store = Store(root / "store")
    try:
        result = build_target(spec, contract.target or "", store=store)
    except (ToolNotFound, BackendUnavailable) as exc:
        store.close()
        raise ContractSkip(f"cannot build here: {exc.message}") from None
    except RmbuildError as exc:
        store.close()
        if exc.exit_code == 7:
            raise ContractSkip(f"cannot build here: {exc.message}") from None
        raise
    record = result.artifact
    return Built(store, spec, record, store.materialize(record.key), [s.key for s in result.stages])


def check_outputs_stored(contract: BackendContract, built: Built) -> None:
    """The artifact holds every output its profile declares and the files the profile
    carries from its input (where the input had them), and its metadata names the backend
    and the fingerprint it was keyed on."""
    profile = plan_last(built).profile
    files = sorted(built.store.get_manifest(built.record.manifest_digest).files)
    for pattern in profile.outputs:
        if not fnmatch.filter(files, pattern):
            raise ContractFailure(f"declared output {pattern!r} is not stored; stored: {files}")
    meta = built.record.metadata
    if built.record.backend != contract.backend or meta.get("backend") != contract.backend:
        raise ContractFailure(f"the artifact's backend is {built.record.backend!r}")
    if not isinstance(meta.get("fingerprint"), dict):
        raise ContractFailure("the artifact's metadata has no fingerprint")


def plan_last(built: Built) -> Any:
    from rmbuild.planning.stages import plan

    return plan(built.spec, built.record.target)[-1]


def _runtime_here(contract: BackendContract) -> None:
    avail = plugin_of(contract).availability()
    if not avail.ok:
        raise ContractSkip(f"the backend's runtime is not here: {avail.reason}")


def check_compatibility(contract: BackendContract, built: Built) -> None:
    """An artifact built here passes ``check_compatible``; the ``incompatible`` variant of
    its metadata is refused with IncompatibleArtifact (exit 6) saying why."""
    _runtime_here(contract)
    plugin = plugin_of(contract)
    plugin.check_compatible(built.record.metadata)
    if contract.incompatible is None:
        raise ContractSkip("no `incompatible` given: the refusal is not checked")
    foreign = contract.incompatible(json.loads(json.dumps(built.record.metadata)))
    try:
        plugin.check_compatible(foreign)
    except IncompatibleArtifact as exc:
        if exc.exit_code != 6 or not exc.message.strip():
            raise ContractFailure(f"refused with exit {exc.exit_code}: {exc.message!r}") from None
        return
    except Exception as exc:
        raise ContractFailure(
            f"check_compatible raised {type(exc).__name__}: {exc}, not IncompatibleArtifact"
        ) from exc
    raise ContractFailure("check_compatible accepted the incompatible metadata")


def check_session(contract: BackendContract, built: Built) -> list[int]:
    """The loaded session generates ``max_tokens`` greedy ids, the same twice (and the
    reference's where given); one step returns a vocabulary's logits; ``close()`` frees it,
    can be called twice, and a closed session refuses with SessionClosed (exit 2)."""
    import numpy as np

    from rmbuild.loading import load

    _runtime_here(contract)
    session = load(built.record.key, store=built.store)
    try:
        ids = session.tokenizer.encode(contract.prompt)
        session.eos_token_ids = set()  # compare every step
        first = [int(t) for t in session.generate_ids(ids, contract.max_tokens)]
        second = [int(t) for t in session.generate_ids(ids, contract.max_tokens)]
        if len(first) != contract.max_tokens or first != second:
            raise ContractFailure(f"greedy generation gave {first}, then {second}")
        if contract.reference_tokens is not None and first != contract.reference_tokens:
            raise ContractFailure(f"tokens {first} differ from the reference's")
        session.step_fn.reset()
        logits = np.asarray(session.step_fn.step(np.asarray(ids, dtype=np.int64)))
        if logits.ndim != 1 or logits.shape[0] <= max(first):
            raise ContractFailure(f"a step returned logits of shape {logits.shape}")
    finally:
        session.close()
    session.close()
    try:
        list(session.generate_ids(ids, 1))
    except SessionClosed as exc:
        if exc.exit_code != 2:
            raise ContractFailure(f"SessionClosed with exit {exc.exit_code}") from None
    else:
        raise ContractFailure("a closed session generated")
    return first


def check_errors(contract: BackendContract, built: Built) -> None:
    """What goes wrong is a typed rmbuild error with its exit code, never a bare exception:
    the load options the backend cannot honour (``bad_options``) are exit 6, and files that
    are not its artifact fail to load without crashing the process (the loader turns a
    runtime's own exception into exit 6, naming the artifact)."""
    _runtime_here(contract)
    plugin = plugin_of(contract)
    meta = built.record.metadata
    if contract.bad_options:
        from rmbuild.loading import load

        try:
            load(built.record.key, store=built.store, **contract.bad_options).close()
        except IncompatibleArtifact as exc:
            if exc.exit_code != 6:
                raise ContractFailure(f"bad options: exit {exc.exit_code}") from None
        except Exception as exc:
            raise ContractFailure(
                f"bad options {contract.bad_options} raised {type(exc).__name__}: {exc}, "
                "not IncompatibleArtifact (exit 6)"
            ) from exc
        else:
            raise ContractFailure(f"load options {contract.bad_options} were accepted")
    with tempfile.TemporaryDirectory(prefix="rmbuild-contract-empty-") as empty:
        try:
            plugin.create_session(Path(empty), meta, {}).close()
        except RmbuildError as exc:
            if exc.exit_code not in (3, 4, 6, 7):
                raise ContractFailure(
                    f"an empty artifact folder gave {type(exc).__name__} (exit {exc.exit_code})"
                ) from None
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception:
            pass  # the loader reports it as ArtifactUnloadable (exit 6)
        else:
            raise ContractFailure("create_session accepted an empty folder")


NO_BUILD = (check_interface, check_availability, check_templates, check_probe_facts_in_key)
WITH_BUILD = (check_outputs_stored, check_compatibility, check_session, check_errors)
