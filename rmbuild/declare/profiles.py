"""Finding BuildProfiles: ``$RMBUILD_PROFILES_PATH``, the project's ``profiles/``, the user's,
then those of installed plugin packages and the built-ins
(:func:`rmbuild.config.search_folders`)."""

from __future__ import annotations

from pathlib import Path

from rmbuild.config import SearchFolder, search_folders
from rmbuild.declare.spec import LoadedProfile, load_profile
from rmbuild.errors import ProfileNotFound, SpecError
from rmbuild.yamlio import did_you_mean


def _candidates(start: Path | None) -> dict[str, Path]:
    """Profile name (file stem) -> file, earlier search-path entries shadowing later ones."""
    return {name: path for name, (path, _) in _located(start).items()}


def _located(start: Path | None) -> dict[str, tuple[Path, SearchFolder]]:
    found: dict[str, tuple[Path, SearchFolder]] = {}
    for folder in search_folders("profiles", start):
        for path in sorted(folder.path.glob("*.yaml")):
            found.setdefault(path.stem, (path, folder))
    return found


def profile_origins(start: Path | None = None) -> dict[str, SearchFolder]:
    """Profile name -> the search folder it is taken from (its origin and package), for
    ``rmbuild profiles``."""
    return {name: folder for name, (_, folder) in _located(start).items()}


def find_profile(
    name: str, start: Path | None = None, *, file: Path | None = None, line: int | None = None
) -> LoadedProfile:
    """Load the profile called ``name``; a missing one lists the ones that exist."""
    candidates = _candidates(start)
    if name not in candidates:
        known = ", ".join(sorted(candidates)) or "none"
        raise ProfileNotFound(
            f"no profile named {name!r}{did_you_mean(name, candidates)}",
            file=file,
            line=line,
            field="profile",
            context=[f"profiles found: {known}"],
            hint="add profiles/<name>.yaml next to your model.yaml, or pick one of the above",
        )
    loaded = load_profile(candidates[name])
    if loaded.profile.name != name:
        raise ProfileNotFound(
            f"profile file is named {name!r} but declares name {loaded.profile.name!r}",
            file=candidates[name],
            field="name",
        )
    return loaded


def list_profiles(start: Path | None = None) -> list[LoadedProfile | SpecError]:
    """Every profile visible from ``start``; a broken one is listed as its error, so one bad
    file does not hide all the others."""
    found: list[LoadedProfile | SpecError] = []
    for _, path in sorted(_candidates(start).items()):
        try:
            found.append(load_profile(path))
        except SpecError as exc:
            found.append(exc)
    return found
