"""Where things live: the store, the index, and the search paths for profiles and templates."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def store_root(explicit: str | os.PathLike | None = None) -> Path:
    """The artifact store: ``--store``, else ``$RMBUILD_STORE``, else the user cache dir."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if env := os.environ.get("RMBUILD_STORE"):
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("rmbuild", appauthor=False))


def index_url(explicit: str | None = None) -> str | None:
    """``--index-url``, else ``$RMBUILD_INDEX_URL`` (any SQLAlchemy URL); None: SQLite."""
    return explicit or os.environ.get("RMBUILD_INDEX_URL") or None


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
