"""rmbuild's side of the remote cache: which remote, and the build's two hooks.

The remote itself is :class:`artifact_store.remote.Remote`; this module picks its URL and
options from the flag, the environment and the config files (:mod:`rmbuild.config`), turns its
errors into rmbuild's (exit 10), and holds the hooks :func:`rmbuild.build.build` calls around a
miss: :func:`fetch` before running a tool, :func:`publish` after committing what it built, and
:func:`share`, which every compile ends with (push what the remote lacks, hits included).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rmbuild import config
from rmbuild.errors import RemoteError

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store
    from artifact_store.entries import RemoteEntry
    from artifact_store.oci import OCIRemote
    from artifact_store.remote import Remote

T = TypeVar("T")
# `--remote none` (or RMBUILD_REMOTE=none) turns a configured default remote off.
OFF = frozenset({"none", "off", "-"})


def open_remote(
    url: str | None = None, *, start: Path | None = None, required: bool = False
) -> Remote | OCIRemote | None:
    """The remote named by ``url``, ``$RMBUILD_REMOTE`` or the config files; None if none.
    ``oci://host[:port]/repo`` is an OCI registry (:mod:`artifact_store.oci`), anything else
    an fsspec URL (:mod:`artifact_store.remote`).

    ``required`` (push, pull, ``ls --remote``): no remote configured is a usage error.
    """
    chosen = config.remote_url(url, start)
    if chosen is None or chosen.strip().lower() in OFF:
        if required:
            from rmbuild.errors import UsageError

            # `--remote` without a URL means "the configured one", and none is configured.
            raise UsageError(
                "no remote given, and none is configured",
                hint="pass --remote URL (e.g. s3://bucket/rmbuild), set RMBUILD_REMOTE, or "
                'put `remote = "URL"` in rmbuild.toml or ~/.config/rmbuild/config.toml',
            )
        return None
    _refuse_secrets(chosen, url, start)
    if chosen.strip().lower().startswith("oci://"):
        return _open_oci(chosen.strip(), start)
    try:
        import fsspec  # noqa: F401
    except ImportError:
        from artifact_store.remote import redact_url

        raise RemoteError(
            f"remote {redact_url(chosen)}: fsspec is not installed",
            remote=redact_url(chosen),
            hint="pip install 'rmbuild[remote]' (fsspec and s3fs; gcsfs or adlfs for gs:// "
            "and az://)",
        ) from None
    from artifact_store.remote import Remote

    return Remote(chosen, storage_options=config.remote_options(start), jobs=_jobs())


def _open_oci(url: str, start: Path | None) -> OCIRemote:
    """An OCI registry remote; a malformed ``oci://`` URL is a usage error (exit 2)."""
    from artifact_store.oci import OCIRemote
    from rmbuild.errors import UsageError

    try:
        return OCIRemote(
            url, options=config.remote_options(start), jobs=_jobs(), describe=oci_annotations
        )
    except ValueError as exc:
        raise UsageError(
            f"remote {url}: {exc}",
            hint="write oci://host[:port]/repository, e.g. oci://registry.example.com/team/models",
        ) from None


def oci_annotations(entry: RemoteEntry) -> dict[str, str]:
    """What an OCI manifest says about an artifact beyond its index row: the device class of
    the profile that built it (npu, gpu, cpu, remote), which a serving host filters on."""
    from rmbuild.declare.profiles import find_profile
    from rmbuild.errors import RmbuildError

    name = entry.metadata.get("profile")
    spec = entry.metadata.get("spec_file")
    if not isinstance(name, str) or not name:
        return {}
    try:
        found = find_profile(name, Path(spec).parent if isinstance(spec, str) else None)
    except RmbuildError:
        return {}
    return {"dev.rmbuild.device-class": found.profile.resource} if found.profile.resource else {}


def _refuse_secrets(chosen: str, flag: str | None, start: Path | None) -> None:
    """A remote URL carries no credentials and no query: UsageError (exit 2) otherwise.

    The URL is used as given (fsspec would take ``file://u:PW@/dir`` for a folder named after
    the password under the current directory, and an S3 key would contain the query), and it
    is shown in messages and logs; so a secret in it is refused, not masked.
    """
    from urllib.parse import urlsplit

    from artifact_store.remote import redact_url
    from rmbuild.errors import UsageError

    problems = []
    # A chained URL (simplecache::s3://...) is checked link by link.
    for link in chosen.split("::"):
        parts = urlsplit(link)
        if not parts.scheme or len(parts.scheme) == 1:
            continue  # a plain path (or a Windows drive): "?" and "@" are file name characters
        if "@" in parts.netloc:
            problems.append("a user name or password (user:password@)")
        if parts.query:
            problems.append("a query string (?...)")
        if parts.fragment:
            problems.append("a fragment (#...)")
    if not problems:
        return
    if flag:
        source = "--remote"
    elif os.environ.get("RMBUILD_REMOTE"):
        source = "RMBUILD_REMOTE"
    else:
        found = [str(path) for path in config.config_files(start)]
        source = "`remote` in " + (" or ".join(found) or "a config file")
    raise UsageError(
        f"the remote URL ({source}) carries {' and '.join(dict.fromkeys(problems))}; rmbuild "
        f"refuses secrets in a remote URL: it would use them as part of the path and show them",
        context=[f"remote: {redact_url(chosen)}"],
        hint="give the URL alone (e.g. s3://bucket/prefix). Credentials belong where the "
        "cloud SDK looks for them: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
        "~/.aws/credentials for S3; GOOGLE_APPLICATION_CREDENTIALS for gs://; AZURE_STORAGE_* "
        "for az://; `docker login HOST` (the Docker config file) for oci://. Options that are "
        "not secret (endpoint_url, region) go in the [remote_options] table of rmbuild.toml",
    )


def _jobs() -> int:
    """``$RMBUILD_REMOTE_JOBS`` parallel transfers (default 8); a bad value is a usage error."""
    raw = os.environ.get("RMBUILD_REMOTE_JOBS") or "8"
    if not raw.isdigit() or int(raw) < 1:
        from rmbuild.errors import InvalidName

        raise InvalidName(
            f"RMBUILD_REMOTE_JOBS={raw!r} is not a positive whole number",
            hint="set it to the number of parallel transfers, e.g. 8, or unset it",
        )
    return int(raw)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a remote operation, turning the store's errors into rmbuild's."""
    from artifact_store import StoreError
    from rmbuild.storage.store import translate

    try:
        return fn(*args, **kwargs)
    except StoreError as exc:
        raise translate(exc) from None  # type: ignore[misc]


def fetch(
    remote: Remote, store: Store, key: str, note: Callable[[str], None]
) -> ArtifactRecord | None:
    """Before a miss runs its tool: the remote's artifact for ``key``, pulled, or None.

    A remote that cannot be read, or whose copy fails its digests, is a warning: the build
    goes on here (a cache must never make a build fail that would succeed without it).
    """
    from artifact_store.errors import RemoteError as StoreRemoteError

    try:
        entry = remote.get(key)
        if entry is None:
            return None
        record = remote.pull(store, entry)
    except StoreRemoteError as exc:
        note(f"{exc}; building here instead")
        return None
    note(f"pulled from {remote.display}")
    return record


def publish(remote: Remote, store: Store, key: str, note: Callable[[str], None]) -> None:
    """After a miss was built and committed: push it (and its upstream stages) to the remote.

    A failure raises (exit 10): CI builds in order to share, so a push that did not happen must
    not look like success. The local artifact is committed either way; running the push (or
    ``compile --remote``, which pushes its results' missing keys) again finishes the job.
    """
    report = call(remote.push, store, [key])
    if report.keys:
        note(f"pushed to {remote.display}")


def share(remote: Remote, store: Store, keys: list[str]) -> list[str]:
    """After a compile, hit or not: push what the remote lacks of artifacts ``keys`` (and their
    upstream stages); returns the keys pushed.

    A hit is pushed too: a host that built while the remote was unreachable, or before it was
    configured, fills the team's cache on its next compile. One lookup per key when the remote
    already holds them. Every target's build (:func:`rmbuild.build.build`, so ``compile_spec``
    and every executor) and the CLI's plan-cache fast path end with it, so they share alike. A
    failure raises (exit 10), as :func:`publish` does.
    """
    return call(remote.push, store, list(dict.fromkeys(keys))).keys
