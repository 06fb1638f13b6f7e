"""rmbuild's view of the artifact store: opening it and turning its errors into ours."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rmbuild.config import index_url, store_root
from rmbuild.errors import (
    AmbiguousArtifact,
    ArtifactNotFound,
    BuildLockTimeout,
    DiskFull,
    InternalError,
    InvalidName,
    RemoteError,
    RmbuildError,
    StoreCorrupt,
    StoreUnavailable,
    UnsafeToolOutput,
)

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store


def open_store(
    root: str | os.PathLike | None = None, url: str | None = None, *, read_only: bool = False
) -> Store:
    """The store at ``--store``/``$RMBUILD_STORE``/the user cache dir.

    ``read_only`` for commands that only read (``ls``, ``show``, ``verify``, ``run``): the
    index is opened read-only so they keep working on a full disk.
    """
    from artifact_store import Store, StoreError

    try:
        return Store(store_root(root), index_url(url), read_only=read_only)
    except StoreError as exc:
        raise translate(exc) from None  # type: ignore[misc]


def describe(record: ArtifactRecord) -> str:
    """One line naming an artifact, for candidate lists."""
    profile = record.metadata.get("profile", "?")
    return (
        f"{record.key[:12]}  {record.model}  {record.target}  {profile}  "
        f"{record.created_at:%Y-%m-%d %H:%M}"
    )


def resolve(store: Store, ref: str) -> ArtifactRecord:
    """Artifact by full id, unique prefix, alias, or ``MODEL:TARGET`` (the newest artifact
    built for that target, as ``pull`` takes it); errors list what exists."""
    import artifact_store

    if ":" in ref:  # never an id or an alias: neither may contain ':'
        return _newest_for(store, ref)
    try:
        return store.resolve(ref)
    except artifact_store.AmbiguousRef as exc:
        raise AmbiguousArtifact(
            f"artifact id {ref!r} is ambiguous: {len(exc.candidates)} artifacts start with it",
            context=[describe(c) for c in exc.candidates],
            hint="give more characters of the id",
        ) from None
    except artifact_store.ArtifactNotFound as exc:
        raise ArtifactNotFound(
            str(exc),
            hint="`rmbuild ls` lists the artifacts in this store (ids, prefixes and aliases work)",
        ) from None


def _newest_for(store: Store, ref: str) -> ArtifactRecord:
    """The newest artifact that is ``model:target``'s result: among the artifacts serving
    that pair, the upstream stages they were built from (a shared export serves the target
    too) do not count."""
    model, _, target = ref.partition(":")
    found = store.list(model=model, target=target) if model and target else []
    parents = {p for r in found for p in r.metadata.get("parents", []) if isinstance(p, str)}
    finals = [r for r in found if r.key not in parents] or found
    if not finals:
        raise ArtifactNotFound(
            f"no artifact for {ref!r} in this store",
            hint="`rmbuild ls --model M --target T` lists what is stored; "
            "`rmbuild compile` builds it, `rmbuild pull` fetches it from a remote",
        )
    return finals[0]  # list() is newest first


def translate(exc: Exception) -> RmbuildError | None:
    """artifact_store's error as the rmbuild error a user should see, or None if not one.

    Each store error class maps to the class of fault it is: the user's input,
    the store's state, a tool's output, a full disk, or a bug (exit 1), never a blanket
    "store unavailable".
    """
    import artifact_store as st
    from artifact_store import errors as se

    if not isinstance(exc, st.StoreError):
        return None
    message = str(exc)
    if isinstance(exc, se.DestinationExists):
        from rmbuild.errors import DestinationNotEmpty

        return DestinationNotEmpty(message, hint="give a new or empty folder, or remove this one")
    if isinstance(exc, st.InvalidAlias):
        return InvalidName(
            message,
            hint="aliases are letters, digits, '.', '_' and '-', and "
            "not all-hex (that would read as an id prefix)",
        )
    if isinstance(exc, st.AmbiguousRef):
        return AmbiguousArtifact(
            message, context=[describe(c) for c in exc.candidates], hint="give more characters"
        )
    if isinstance(exc, st.ArtifactNotFound):
        return ArtifactNotFound(message, hint="`rmbuild ls` lists the artifacts and aliases")
    if isinstance(exc, st.LockTimeout):
        return BuildLockTimeout(
            message, hint="another process is still building this key; try again when it is done"
        )
    if isinstance(exc, st.StoreUnavailable):
        return StoreUnavailable(
            message, hint="check --store / RMBUILD_STORE and --index-url / RMBUILD_INDEX_URL"
        )
    if isinstance(exc, se.DiskFull):
        return DiskFull(
            f"artifact store: {message}", path=exc.path, needed=exc.needed, free=exc.free
        )
    if isinstance(exc, se.UnsafeTree):
        return UnsafeToolOutput(
            f"the tool's output was refused: {message}",
            tool="the tool",
            hint="the tool left a link out of its output folder or a special file; "
            "a tool must leave regular files inside its output",
        )
    if isinstance(exc, se.ArtifactCorrupt):
        return StoreCorrupt(
            f"artifact store: {message}",
            context=exc.problems,
            hint="`rmbuild compile` rebuilds a corrupt artifact (`--rebuild` forces it)",
        )
    if isinstance(exc, se.RemoteError):  # Exit 10, the remote named without secrets
        if isinstance(exc, se.RemoteAuthError):
            code = "remote-auth"
            hint = (
                "set the provider's credentials (e.g. AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for this remote"
            )
            if exc.remote.startswith("oci://"):  # a registry: the Docker config file's
                hint = (
                    "log in to the registry (`docker login HOST`, or an auths entry in "
                    "$DOCKER_CONFIG/config.json, else ~/.docker/config.json)"
                )
        elif isinstance(exc, se.RemoteCorrupt):
            code = "remote-corrupt"
            hint = "the remote copy is damaged; push it again from a good store, or build here"
        else:
            code = "remote-error"
            hint = (
                "check the URL (--remote / RMBUILD_REMOTE / config file), the network and "
                "the bucket; a push can simply be run again, it resumes"
            )
        return RemoteError(message, remote=exc.remote, code=code, hint=hint)
    if isinstance(exc, st.CorruptObject | st.CorruptManifest):
        return StoreCorrupt(
            f"artifact store: {message}",
            hint="run `rmbuild verify --repair`, then `rmbuild compile` rebuilds what it dropped",
        )
    # InvalidArgument, and any StoreError without a class of its own: rmbuild called the
    # store wrongly. That is a bug to report, not a store the user must fix.
    return InternalError(
        f"artifact store: {message}",
        hint="this is a bug in rmbuild; run again with -v and report it",
    )
