"""The plan cache: a cache hit without pydantic, jinja2 or SQLAlchemy.

A whole-process hit spent ~0.2 s importing the spec machinery (pydantic, jinja2, YAML) to
recompute keys that had not changed. After every build of a target, :func:`remember` writes
``<store>/plancache/<sha256 of the spec's path>.json``: the spec's bytes digest and, per
target, its stage keys, the manifest digest each stage was fed, and the stat (inode, mtime_ns,
size) of everything the keys were computed from:

* model.yaml, every file of the model source and the folders holding them;
* the profile, template and toolchain files of each stage, the lock file and install marker of
  a provisioned toolchain, the folders searched for them (a new file there could shadow one);
* the tool: the executable (or shipped script), its interpreter, the ``tool.files`` it
  declares, the version command's executable; the site-packages folders of an in-process
  toolchain (a pip install or upgrade changes them, and the toolchain's identity with them);
* rmbuild's own key code and the stage's backend package (a changed rule changes keys);
* the values of the environment variables that choose them or enter the key (``key_env`` of
  toolchain and profile, PATH, the RMBUILD_* search paths), and a digest of /proc/cpuinfo's
  flags and the machine type (the fingerprints of the fast-path backends depend on the CPU only).

:func:`fast_compile` (the CLI, before importing the spec machinery) trusts an entry only if all
of that is unchanged, then resolves the keys through the store (the stdlib-sqlite3 reader): an
upstream stage by its action result (its output digest; its files need not be here, as on the
full path), the target's artifact by its row, with the same integrity check as every hit (issue
6 #8: each blob's stat against its ingest record; damage quarantines and falls back to the full
path, which rebuilds). Any difference
returns None and the full path runs. Backends whose fingerprint asks a device (TensorRT,
RBLN: driver, compute capability) are not in ``FAST_BACKENDS``: their targets always take the
full path. Like the store's stat cache, an entry is not written while a file it depends on is
younger than the racy window (a change within the same mtime tick would go unseen).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.host.hostinfo import host_digest

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store

# 2: environment values are kept as digests (a key_env variable may hold a token).
PLANCACHE_VERSION = 2
# Backends whose fingerprint is a function of files, flags and the CPU alone.
FAST_BACKENDS = frozenset({"onnxruntime", "openvino", "iree", "furiosa"})
# Environment that decides which files are read (search paths, PATH for tools).
SEARCH_ENV = (
    "PATH",
    "HOME",
    "RMBUILD_PROFILES_PATH",
    "RMBUILD_TEMPLATES_PATH",
    "RMBUILD_CONFIG_DIR",
    "RMBUILD_DATA_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
)
RACY = 2_000_000_000  # ns, as artifact_store.statcache's RACY_WINDOW_NS
# A cache hit refreshes last_used_at (for gc's LRU) at most this often: the write is what
# would make a hit import SQLAlchemy, so it is amortized.
TOUCH_EVERY_S = 3600

Stat = tuple[int, int, int] | None


def _stat(path: str) -> Stat:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# The folders of rmbuild whose modules compute keys and run builds (the top-level foundations,
# the declarations, the tool-running wing, planning, building and the store glue): an edit to
# one of them may change what a hit means, so the fast path stats them. The runtime, the
# server and the CLI's other commands cannot change a key.
SPINE = ("", "declare", "toolrun", "host", "planning", "build", "storage")


def _file_for(spec_path: Path, store_root: Path) -> Path:
    name = hashlib.sha256(str(spec_path).encode()).hexdigest()[:32]
    return store_root / "plancache" / f"{name}.json"


def _header(spec_bytes: bytes) -> dict[str, Any]:
    from rmbuild.keys import KEY_VERSION
    from rmbuild.version import __version__

    return {
        "version": PLANCACHE_VERSION,
        "key_version": KEY_VERSION,
        "rmbuild": __version__,
        "python": sys.executable,
        "spec_sha256": hashlib.sha256(spec_bytes).hexdigest(),
        "host": host_digest(),
    }


# ----------------------------------------------------------------------------- recording


@dataclass
class Snapshot:
    """What a target's keys depend on, stat'ed before they were computed."""

    spec_path: Path
    spec_bytes: bytes
    model: str
    target: str
    targets: list[str]
    paths: list[str]
    stats: list[Stat]
    env: dict[str, str | None]


def _deps(spec: Any, chain: list[Any]) -> tuple[list[str], list[str]]:
    """(paths, env names) the keys of ``chain`` are computed from (see the module docstring)."""
    import glob

    from rmbuild import config
    from rmbuild.declare import sources
    from rmbuild.toolrun import toolchains, toolid
    from rmbuild.toolrun.adapter import BinaryCompilerAdapter

    paths: list[Path] = [spec.path]
    source = sources.source_files(spec)
    root = Path(sources.source_path(spec))
    paths += source.values()
    paths += {p.parent for p in source.values()} | {root}
    for folder in [spec.root, *spec.root.parents]:  # where project_dir looks
        paths.append(folder)
        if (folder / ".git").exists() or (folder / "pyproject.toml").exists():
            break
    for kind in ("profiles", "templates"):
        # Folders that exist and those that could appear (a new user folder shadows too).
        user = config.user_config_dir()
        for d in [*config.search_path(kind, spec.root), user, user / kind, spec.root / kind]:
            paths += [d, d / "toolchains"]
    names: list[str] = list(SEARCH_ENV)
    tc_files = toolchains._files(spec.root)
    # rmbuild's own code on the way from model.yaml to a key: a change to it invalidates.
    package = Path(__file__).resolve().parents[1]
    for wing in SPINE:
        paths += sorted((package / wing).glob("*.py"))
    for stage in chain:
        profile, tc = stage.profile, stage.toolchain
        paths.append(stage.loaded.path)
        if tc.name in tc_files:
            paths.append(tc_files[tc.name])
        names += [*tc.key_env, *profile.key_env]
        for template in [profile.template, *profile.configs.values()]:
            for d in config.search_path("templates", spec.root):
                if (d / template).is_file():
                    paths.append(d / template)
                    break
        paths += sorted((package / "backends" / profile.backend).glob("*.py"))
        if tc.lock:
            paths.append(Path(tc.lock))
        if tc.provisioned:
            from rmbuild.toolrun import provision

            paths.append(provision.env_dir(tc.name) / provision.MARKER)
        else:
            paths.append(tc.python_path)
            if tc.python is None:
                paths += [Path(p) for p in sys.path if p and os.path.isdir(p)]
            else:
                prefix = tc.python_path.parent.parent
                paths += [
                    Path(p) for p in glob.glob(str(prefix / "lib" / "python*" / "*-packages"))
                ]
        adapter = BinaryCompilerAdapter(profile, tc, spec.root)
        with contextlib.suppress(Exception):  # a missing tool fails the key itself
            script = adapter.script_path()
            paths.append(script if script is not None else adapter.resolve_tool())
            if profile.tool.files:
                paths += toolid.identity_files(profile, tc).values()
            if profile.tool.version_command:
                paths.append(tc.which(profile.tool.version_command[0]))
    return [str(p) for p in dict.fromkeys(paths)], list(dict.fromkeys(names))


def snapshot(spec: Any, target: str, chain: list[Any]) -> Snapshot | None:
    """Stat what ``target``'s keys depend on (None: this target never takes the fast path).

    Never raises: the plan cache is an optimization, a failure here only costs speed.
    """
    try:
        if any(stage.profile.backend not in FAST_BACKENDS for stage in chain):
            return None
        from rmbuild.declare.sources import unpinned

        if unpinned(spec):  # a branch moves under the same model.yaml: never a fast-path hit
            return None
        spec_bytes = Path(spec.path).read_bytes()
        paths, names = _deps(spec, chain)
        return Snapshot(
            spec_path=Path(spec.path).resolve(),
            spec_bytes=spec_bytes,
            model=spec.spec.name,
            target=target,
            targets=list(spec.spec.targets),
            paths=paths,
            stats=[_stat(p) for p in paths],
            env={n: _env_digest(os.environ.get(n)) for n in names},
        )
    except Exception:  # noqa: BLE001 - see the docstring
        return None


def remember(snap: Snapshot | None, store: Store, results: list[Any]) -> None:
    """Write ``snap``'s target entry once its keys are known (never raises)."""
    if snap is None:
        return
    with contextlib.suppress(Exception):
        now = time.time_ns()
        stats = [_stat(p) for p in snap.paths]
        if stats != snap.stats or Path(snap.spec_path).read_bytes() != snap.spec_bytes:
            return  # something changed while the keys were computed
        young = [p for p, s in zip(snap.paths, stats, strict=True) if s and s[1] > now - RACY]
        if any(not os.path.isdir(p) for p in young):
            return  # a file too young to trust its stat (racy git); folders only list names
        file = _file_for(snap.spec_path, store.root)
        header = _header(snap.spec_bytes)
        try:
            data = json.loads(file.read_text("utf-8"))
            if {k: data.get(k) for k in header} != header:
                data = {}
        except (OSError, ValueError):
            data = {}
        data.update(header)
        data["model"] = snap.model
        data["targets"] = snap.targets
        entries = data.setdefault("entries", {})
        stages, parent = [], None
        for r in results:
            stages.append({"profile": r.profile, "key": r.key, "input": parent})
            parent = r.manifest_digest  # the stage's result: its files may not be here
        entries[snap.target] = {
            "deps": [[p, *s] if s else [p] for p, s in zip(snap.paths, stats, strict=True)],
            "env": snap.env,
            "stages": stages,
        }
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), "utf-8")
        os.replace(tmp, file)


# ----------------------------------------------------------------------------- the fast path


@dataclass(frozen=True)
class FastStage:
    """A stage of a fast hit. ``record`` is None for an upstream stage this store knows only
    by its result (its files were never needed here)."""

    profile: str
    key: str
    record: ArtifactRecord | None


@dataclass(frozen=True)
class FastResult:
    model: str
    target: str
    stages: list[FastStage]


def _env_digest(value: str | None) -> str | None:
    """What the plan cache keeps of an environment value: its digest, never the value (a
    ``key_env`` variable may hold a token, and the file is plain JSON in the store)."""
    if value is None:
        return None
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def _valid(entry: dict[str, Any]) -> bool:
    for name, value in entry["env"].items():
        if _env_digest(os.environ.get(name)) != value:
            return False
    for dep in entry["deps"]:
        want = tuple(dep[1:]) if len(dep) > 1 else None
        if _stat(dep[0]) != want:
            return False
    return True


def lookup(spec_path: str, store_root: Path, targets: list[str] | None) -> Any:
    """The cached stage plan of ``targets`` (None: every target), or None if anything it
    depends on changed. Returns (model, {target: [stage, ...]})."""
    if os.environ.get("RMBUILD_NO_PLAN_CACHE"):  # the escape hatch (and the bench baseline)
        return None
    try:
        path = Path(spec_path).resolve()
        spec_bytes = path.read_bytes()
        data = json.loads(_file_for(path, store_root).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    header = _header(spec_bytes)
    if {k: data.get(k) for k in header} != header:
        return None
    names = targets or data.get("targets") or []
    entries = data.get("entries", {})
    chosen = {}
    for name in names:
        entry = entries.get(name)
        if entry is None or not _valid(entry):
            return None
        chosen[name] = entry["stages"]
    return (data["model"], chosen) if chosen else None


def record_hit(store: Store, record: ArtifactRecord, model: str, target: str) -> None:
    """Bookkeeping of a hit, on the full path (:func:`rmbuild.build.build`) and the fast one:
    its (model, target) use and its last use; skipped on a full disk (a hit must
    not fail for want of a few bytes of index)."""
    from datetime import UTC, datetime

    from artifact_store.errors import DiskFull

    try:
        if not store.has_use(record.key, model, target):
            # A shared stage (the export) serves this target too: `ls --target` shows it.
            store.add_use(record.key, model, target)
        if (datetime.now(UTC) - record.last_used_at).total_seconds() > TOUCH_EVERY_S:
            store.touch(record.key)
    except DiskFull:
        pass


def fast_compile(
    spec_path: str, store: Store, targets: list[str] | None, *, record_hits: bool = True
) -> list[FastResult] | None:
    """Every stage of ``targets`` as cache hits without the spec machinery, or None (take
    the full path: something changed, something is missing or damaged).

    ``record_hits=False`` (``--cache-policy readonly``): the hits are not written down (no use,
    no last-use time): a read-only compile writes nothing into the index."""
    found = lookup(spec_path, store.root, targets)
    if found is None:
        return None
    model, chosen = found
    results: list[FastResult] = []
    checked: dict[str, ArtifactRecord] = {}
    for target, stages in chosen.items():
        done: list[FastStage] = []
        parent: str | None = None
        for n, stage in enumerate(stages):
            if stage["input"] != parent:
                return None
            if n < len(stages) - 1:
                # An upstream stage counts by its result, as on the full path: the key after
                # it needs its output digest, not its files (which need not be here).
                result = store.result(stage["key"])
                if result is None:
                    return None
                done.append(FastStage(stage["profile"], stage["key"], store.get(stage["key"])))
                parent = result.manifest_digest
                continue
            record = checked.get(stage["key"]) or store.get(stage["key"])
            if record is None:
                return None
            if stage["key"] not in checked:
                # The integrity check of every hit: a damaged blob is quarantined
                # and the full path rebuilds it.
                if store.check(record):
                    return None
                checked[stage["key"]] = record
            done.append(FastStage(stage["profile"], stage["key"], record))
        results.append(FastResult(model, target, done))
    for result in results if record_hits else []:
        for s in result.stages:
            if s.record is not None:
                record_hit(store, s.record, result.model, result.target)
    return results


# ----------------------------------------------------------------------------- resource classes
#
# `compile --target npu` resolves the class through rmbuild.planning.policy: the model's
# targets whose profile serves it, each built if its toolchains and system tools are here. A
# class entry records that decision (the targets chosen, in order, and the lines saying what
# was skipped and why) with the stat of everything it depends on: each candidate's chain as
# for a target entry (profiles, toolchain files, install markers, site-packages), and each
# place a system tool of their toolchains would be found. Devices only order the candidates,
# they choose none, so they are not among them. A class whose candidates are defaults (the
# model has no target for it) or include a backend outside FAST_BACKENDS is never recorded.


@dataclass
class ClassSnapshot:
    """What a class's resolution depends on, stat'ed before the policy decided it."""

    spec_path: Path
    spec_bytes: bytes
    paths: list[str]
    stats: list[Stat]
    env: dict[str, str | None]


def class_snapshot(spec: Any, chains: list[list[Any]]) -> ClassSnapshot | None:
    """Stat what the resolution of a class with these candidate ``chains`` depends on (see
    above); None: not cacheable. Never raises."""
    try:
        stages = [stage for chain in chains for stage in chain]
        if not stages or any(s.profile.backend not in FAST_BACKENDS for s in stages):
            return None
        from rmbuild.toolrun.toolenv import SYSTEM_PATH

        paths: list[str] = []
        names: list[str] = []
        for chain in chains:
            more_paths, more_names = _deps(spec, chain)
            paths += more_paths
            names += more_names
        for stage in stages:
            tc = stage.toolchain
            search = tc.env.get("PATH") or os.pathsep.join([str(tc.bin_dir), *SYSTEM_PATH])
            for tool in tc.system_tools:
                exe = tool.check[0]
                if os.sep in exe:
                    paths.append(exe)
                else:
                    paths += [os.path.join(d, exe) for d in search.split(os.pathsep) if d]
        paths = list(dict.fromkeys(paths))
        names = list(dict.fromkeys(names))
        spec_path = Path(spec.path).resolve()
        return ClassSnapshot(
            spec_path=spec_path,
            spec_bytes=spec_path.read_bytes(),
            paths=paths,
            stats=[_stat(p) for p in paths],
            env={n: _env_digest(os.environ.get(n)) for n in names},
        )
    except Exception:  # noqa: BLE001 - an optimization: a failure only costs speed
        return None


def remember_class(
    snap: ClassSnapshot | None, store: Store, value: str, targets: list[str], notes: list[str]
) -> None:
    """Record that class ``value`` means ``targets`` (in order), printing ``notes`` (what was
    skipped and why), if nothing it depends on changed meanwhile (never raises)."""
    if snap is None:
        return
    with contextlib.suppress(Exception):
        now = time.time_ns()
        stats = [_stat(p) for p in snap.paths]
        if stats != snap.stats or snap.spec_path.read_bytes() != snap.spec_bytes:
            return  # something changed while the policy decided
        young = [p for p, s in zip(snap.paths, stats, strict=True) if s and s[1] > now - RACY]
        if any(not os.path.isdir(p) for p in young):
            return  # a file too young to trust its stat (see remember)
        file = _file_for(snap.spec_path, store.root)
        header = _header(snap.spec_bytes)
        try:
            data = json.loads(file.read_text("utf-8"))
            if {k: data.get(k) for k in header} != header:
                data = {}
        except (OSError, ValueError):
            data = {}
        data.update(header)
        data.setdefault("classes", {})[value] = {
            "targets": targets,
            "notes": notes,
            "deps": [[p, *s] if s else [p] for p, s in zip(snap.paths, stats, strict=True)],
            "env": snap.env,
        }
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), "utf-8")
        os.replace(tmp, file)


def expand_classes(
    spec_path: str, store_root: Path, values: list[str]
) -> tuple[list[str], list[str]] | None:
    """``--target`` values with each recorded class replaced by its targets, and the notes to
    print; None if a class's entry is missing or anything it depends on changed (take the
    full path). Values that are not recorded classes are kept as they are."""
    if os.environ.get("RMBUILD_NO_PLAN_CACHE"):
        return None
    try:
        path = Path(spec_path).resolve()
        data = json.loads(_file_for(path, store_root).read_text("utf-8"))
        header = _header(path.read_bytes())
    except (OSError, ValueError):
        return None
    if {k: data.get(k) for k in header} != header:
        return None  # model.yaml (or rmbuild, the host) changed: nothing here holds
    classes = data.get("classes") or {}
    names: list[str] = []
    notes: list[str] = []
    for value in values:
        entry = classes.get(value)
        if entry is None:
            names.append(value)  # a target name (lookup checks it), or a class not recorded
            continue
        if not _valid(entry):
            return None
        names += [n for n in entry["targets"] if n not in names]
        notes += entry["notes"]
    return names, notes
