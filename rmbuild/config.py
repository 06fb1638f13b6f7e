"""Where things live: the store, the index, the remote, and the search paths for profiles and
templates.

Settings a team sets once (issue 9) live in TOML files: the user's
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
    remote (issue 9)."""
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


def search_path(kind: str, start: Path | None = None) -> list[Path]:
    """Folders searched for ``kind`` (profiles or templates), first match wins.

    Order: ``$RMBUILD_<KIND>_PATH`` (os.pathsep-separated), the project's folder, the user's
    config folder, then the built-ins, so a user can add or shadow a profile without touching
    the package.
    """
    folders: list[Path] = []
    if env := os.environ.get(f"RMBUILD_{kind.upper()}_PATH"):
        folders += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    if (proj := project_dir(kind, start)) is not None:
        folders.append(proj)
    folders.append(user_config_dir() / kind)
    folders.append(builtin_dir(kind))
    seen: set[Path] = set()
    unique = []
    for folder in folders:
        resolved = folder.resolve()
        if resolved not in seen and resolved.is_dir():
            seen.add(resolved)
            unique.append(resolved)
    return unique
