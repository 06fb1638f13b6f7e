"""Finding BuildProfiles: ``$RMBUILD_PROFILES_PATH``, the project's ``profiles/``, the user's,
then those of installed plugin packages and the built-ins
(:func:`rmbuild.config.search_folders`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from rmbuild.config import SearchFolder, search_folders
from rmbuild.declare.spec import LoadedProfile, load_profile
from rmbuild.errors import ProfileNotFound, SpecError
from rmbuild.yamlio import did_you_mean

# Profiles already read in the current read_once() block, by file and its stat (path, inode,
# mtime, size): a file changed meanwhile is read again.
_READ: ContextVar[dict[tuple[str, int, int, int], LoadedProfile] | None] = ContextVar(
    "rmbuild_profiles_read", default=None
)


@contextlib.contextmanager
def read_once() -> Iterator[None]:
    """Within this block each profile file is read and validated once.

    A compile asks for the same profiles several times: the resource-class policy, the plan of
    each target (once to refuse spec errors before any tool starts, once to build it), and the
    plan of every target that shares an upstream stage. Nested blocks share the outer one's
    profiles; outside any block every call reads the file (a long-lived process, such as the
    server, sees a profile edited since).
    """
    if _READ.get() is not None:
        yield
        return
    token = _READ.set({})
    try:
        yield
    finally:
        _READ.reset(token)


def _load(path: Path) -> LoadedProfile:
    """:func:`~rmbuild.declare.spec.load_profile`, or the profile read earlier in this
    :func:`read_once` block if the file has not changed since."""
    read = _READ.get()
    if read is None:
        return load_profile(path)
    try:
        st = path.stat()
    except OSError:
        return load_profile(path)  # says what is wrong with it
    key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    loaded = read.get(key)
    if loaded is None:
        loaded = read[key] = load_profile(path)
    return loaded


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
    loaded = _load(candidates[name])
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
            found.append(_load(path))
        except SpecError as exc:
            found.append(exc)
    return found
