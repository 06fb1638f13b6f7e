"""Where things live: the store, the index, the remote, and the search paths for profiles and
templates (the user's, the project's, installed plugin packages' and the built-ins).

Settings a team sets once live in TOML files: the user's
``~/.config/rmbuild/config.toml`` (``$RMBUILD_CONFIG_DIR/config.toml``) and a project's
``rmbuild.toml``, the nearest one at or above the model.yaml's folder (or the working
directory), searched up to the repository's root. Keys: ``remote`` (an fsspec URL),
``index_url`` (an SQLAlchemy URL), ``cache_policy`` (``readwrite`` or ``readonly``) and a
``[remote_options]`` table handed to the remote's filesystem (e.g. ``endpoint_url``; never
credentials: those stay where the provider's SDK looks for them). Precedence, first wins: the
command-line flag, the environment variable (``RMBUILD_REMOTE``, ``RMBUILD_INDEX_URL``,
``RMBUILD_CACHE_POLICY``), the project file, the user file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def store_root(explicit: str | os.PathLike | None = None) -> Path:
    """The artifact store: ``--store``, else ``$RMBUILD_STORE``, else the user cache dir."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if env := os.environ.get("RMBUILD_STORE"):
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("rmbuild", appauthor=False))


def index_url(explicit: str | None = None, start: Path | None = None) -> str | None:
    """``--index-url``, else ``$RMBUILD_INDEX_URL``, else ``index_url`` of the config files
    (see the module docstring); any SQLAlchemy URL. None: SQLite in the store."""
    return setting("index_url", explicit, "RMBUILD_INDEX_URL", start)


def remote_url(explicit: str | None = None, start: Path | None = None) -> str | None:
    """``--remote``, else ``$RMBUILD_REMOTE``, else ``remote`` of the config files; None: no
    remote."""
    return setting("remote", explicit, "RMBUILD_REMOTE", start)


def remote_options(start: Path | None = None) -> dict[str, Any]:
    """The ``[remote_options]`` tables (user file, then project file on top), for fsspec."""
    merged: dict[str, Any] = {}
    for doc in _config_docs(start):
        table = doc.get("remote_options")
        if isinstance(table, dict):
            merged.update(table)
    return merged


def setting(
    name: str, explicit: str | None, env: str | None, start: Path | None = None
) -> str | None:
    """A string setting: the flag, else ``$env``, else the project file, else the user file."""
    if explicit:
        return explicit
    if env and (value := os.environ.get(env)):
        return value
    for doc in reversed(_config_docs(start)):
        value = doc.get(name)
        if isinstance(value, str) and value:
            return value
    return None


CONFIG_FILE = "config.toml"
PROJECT_FILE = "rmbuild.toml"


def config_files(start: Path | None = None) -> list[Path]:
    """The config files that exist, lowest precedence first: the user's, then the project's."""
    files = [user_config_dir() / CONFIG_FILE]
    folder = (start or Path.cwd()).absolute()
    for candidate in [folder, *folder.parents]:
        if (candidate / PROJECT_FILE).is_file():
            files.append(candidate / PROJECT_FILE)
            break
        if (candidate / ".git").exists():
            break
    return [f for f in files if f.is_file()]


def _config_docs(start: Path | None) -> list[dict[str, Any]]:
    import tomllib

    from rmbuild.errors import SpecError

    docs = []
    for path in config_files(start):
        try:
            docs.append(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"config file is not valid TOML: {exc}", file=path) from None
        except OSError as exc:
            raise SpecError(f"cannot read config file: {exc.strerror or exc}", file=path) from None
    return docs


def user_config_dir() -> Path:
    if env := os.environ.get("RMBUILD_CONFIG_DIR"):
        return Path(env).expanduser()
    from platformdirs import user_config_dir as _ucd

    return Path(_ucd("rmbuild", appauthor=False))


def builtin_dir(kind: str) -> Path:
    """Built-in ``profiles``/``templates``: inside the wheel, or at the repo top in a checkout."""
    shipped = PACKAGE_DIR / "_builtin" / kind
    if shipped.is_dir():
        return shipped
    return PACKAGE_DIR.parent / kind


def project_dir(kind: str, start: Path | None) -> Path | None:
    """The nearest ``kind`` folder at or above ``start`` (the model.yaml's folder)."""
    if start is None:
        return None
    for folder in [start, *start.parents]:
        candidate = folder / kind
        if candidate.is_dir():
            return candidate
        if (folder / ".git").exists() or (folder / "pyproject.toml").exists():
            break
    return None


RESOURCES_GROUP = "rmbuild.resources"
"""Entry-point group of packages that ship profiles, templates and toolchain files: the value
names a Python package whose folder holds ``profiles/`` (with ``profiles/toolchains/``) and
``templates/``, e.g. ``acme = "acme_npu.resources"``."""

BUILTIN_PACKAGE = "rmbuild"


@dataclass(frozen=True)
class SearchFolder:
    """One folder of a search path and where it comes from: ``origin`` is ``env``,
    ``project``, ``user``, ``plugin`` or ``built-in``; ``package`` the distribution that
    ships it (plugins and built-ins; empty for the user's own folders)."""

    path: Path
    origin: str
    package: str = ""

    @property
    def label(self) -> str:
        """What ``rmbuild profiles`` shows: the package for shipped folders, else the origin."""
        return self.package or self.origin


@dataclass(frozen=True)
class ResourcePackage:
    """A package registered in ``rmbuild.resources``: its folder, or why it has none."""

    name: str
    package: str
    module: str
    folder: Path | None
    error: str = ""


def _distribution(ep: Any) -> str:
    dist = getattr(ep, "dist", None)  # None for an entry point made by hand (tests)
    return dist.metadata["Name"] if dist is not None else ep.value.split(":")[0].split(".")[0]


@cache
def plugin_resources() -> tuple[ResourcePackage, ...]:
    """Every package of the ``rmbuild.resources`` group, with its folder.

    The package is located with ``importlib.util.find_spec``, which does not run a top-level
    package's code (a plugin's backend is imported only when a build or a run needs it). One
    that cannot be found is kept with its error (``rmbuild backends`` shows it) and searched
    nowhere.
    """
    import importlib.util
    from importlib.metadata import entry_points

    found: list[ResourcePackage] = []
    for ep in sorted(entry_points(group=RESOURCES_GROUP), key=lambda e: (e.name, e.value)):
        if getattr(ep, "group", RESOURCES_GROUP) != RESOURCES_GROUP:
            continue
        package = _distribution(ep)
        module = ep.value.split(":", 1)[0].strip()
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            spec, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = "" if spec is not None else f"no module named {module!r}"
        folder: Path | None = None
        if spec is not None:
            locations = list(spec.submodule_search_locations or [])
            folder = Path(locations[0]) if locations else Path(str(spec.origin)).parent
        found.append(ResourcePackage(ep.name, package, module, folder, error))
    return tuple(found)


def search_folders(kind: str, start: Path | None = None) -> list[SearchFolder]:
    """Folders searched for ``kind`` (profiles or templates), first match wins, with where
    each comes from.

    Order: ``$RMBUILD_<KIND>_PATH`` (os.pathsep-separated), the project's folder, the user's
    config folder, the folders of installed plugin packages (``rmbuild.resources``), then the
    built-ins, so a user can add or shadow a profile without touching any package. Packages
    never shadow each other: two of them (rmbuild's built-ins included) shipping one profile,
    toolchain or template name is a :class:`~rmbuild.errors.PluginConflict` naming both.
    """
    folders: list[SearchFolder] = []
    if env := os.environ.get(f"RMBUILD_{kind.upper()}_PATH"):
        folders += [SearchFolder(Path(p).expanduser(), "env") for p in env.split(os.pathsep) if p]
    if (proj := project_dir(kind, start)) is not None:
        folders.append(SearchFolder(proj, "project"))
    folders.append(SearchFolder(user_config_dir() / kind, "user"))
    packages = [
        SearchFolder(res.folder / kind, "plugin", res.package)
        for res in plugin_resources()
        if res.folder is not None
    ]
    builtin = SearchFolder(builtin_dir(kind).resolve(), "built-in", BUILTIN_PACKAGE)
    packages.append(builtin)
    seen: set[Path] = set()
    unique: list[SearchFolder] = []
    for folder in [*folders, *packages]:
        resolved = folder.path.resolve()
        if resolved not in seen and resolved.is_dir():
            seen.add(resolved)
            # In a checkout of rmbuild the built-ins are also the project's folder: say so.
            unique.append(
                builtin
                if resolved == builtin.path
                else SearchFolder(resolved, folder.origin, folder.package)
            )
    _check_packages(kind, tuple(f for f in unique if f.package))
    return unique


def search_path(kind: str, start: Path | None = None) -> list[Path]:
    """The folders of :func:`search_folders`, first match wins."""
    return [folder.path for folder in search_folders(kind, start)]


# What each kind's files are, relative to a package's folder of that kind.
_SHIPPED = {"profiles": ("*.yaml", "toolchains/*.yaml"), "templates": ("*",)}


@cache
def _check_packages(kind: str, folders: tuple[SearchFolder, ...]) -> None:
    """Raise PluginConflict if two packages ship one name of ``kind``. Checked once per
    process for a set of folders: what an installed package ships does not change under a
    running rmbuild."""
    owner: dict[str, tuple[SearchFolder, Path]] = {}
    for folder in folders:
        for pattern in _SHIPPED.get(kind, ()):
            for path in sorted(folder.path.glob(pattern)):
                if not path.is_file():
                    continue
                sub = path.parent.name + "/" if pattern.startswith("toolchains/") else ""
                name = sub + (path.stem if path.suffix == ".yaml" else path.name)
                if name in owner and owner[name][0].package != folder.package:
                    from rmbuild.errors import PluginConflict

                    first, first_path = owner[name]
                    what = {"profiles": "profile", "templates": "template"}[kind]
                    if sub:
                        what, name = "toolchain", name.removeprefix(sub)
                    raise PluginConflict(
                        f"two installed packages define the {what} {name!r}: "
                        f"{first.package} and {folder.package}",
                        context=[
                            f"{first.package}: {first_path}",
                            f"{folder.package}: {path}",
                        ],
                        hint="uninstall one of the two packages, or ask its vendor to rename "
                        f"the {what}",
                    )
                owner.setdefault(name, (folder, path))
