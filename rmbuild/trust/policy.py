"""The trust policy: which artifacts ``run``, ``serve``, ``rmbuild.load`` and ``pull`` accept.

``trust = "signed-by:KEY.pub"`` (a public key, or CA certificates for the certificate method)
in a project's ``rmbuild.toml`` or the user's ``config.toml``, ``RMBUILD_TRUST``, or
``--trust``; first wins: the flag, the variable, the project file, the user file. A relative
path is read from the folder of the file that names it (the working directory for the flag and
the variable). ``none`` turns a configured policy off for one command.

With a policy, an artifact that is unsigned, signed by another key, whose signature does not
hold, or whose files changed since signing is refused with exit 6 (``artifact-untrusted``)
before any byte of it reaches a vendor runtime (the loader checks it before the backend is
even imported), and a pull is refused before anything enters the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rmbuild.errors import SpecError, UsageError

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Manifest, Store
    from artifact_store.attachments import Attachment
    from artifact_store.entries import RemoteEntry
    from rmbuild.trust.oms import TrustRoot
    from rmbuild.trust.signatures import Finding

ENV = "RMBUILD_TRUST"
SETTING = "trust"
PREFIX = "signed-by:"
OFF = ("none", "off")


@dataclass(frozen=True)
class Policy:
    """A trust policy: the root signatures must verify with, and where it was set."""

    value: str
    path: Path
    origin: str

    def root(self) -> TrustRoot:
        from rmbuild.trust.oms import TrustRoot

        return TrustRoot.load(self.path)

    def describe(self) -> str:
        return f"the trust policy ({self.value!r}, from {self.origin})"


def parse(value: str, origin: str, base: Path, file: Path | None = None) -> Policy | None:
    """``value`` as a policy; None for ``none``. A bad value names where it came from: exit 3
    for a config file (its field), exit 2 for the flag or the variable."""
    text = value.strip()
    if text.lower() in OFF:
        return None
    if not text.startswith(PREFIX) or not text[len(PREFIX) :].strip():
        message = f"trust policy {value!r} is not understood"
        hint = 'write trust = "signed-by:PATH" (a PEM public key or CA certificates), or "none"'
        if file is not None:
            raise SpecError(message, file=file, field=SETTING, hint=hint)
        raise UsageError(f"{message} ({origin})", hint=hint)
    path = Path(text[len(PREFIX) :].strip()).expanduser()
    return Policy(text, path if path.is_absolute() else base / path, origin)


def resolve(explicit: str | None = None, start: Path | None = None) -> Policy | None:
    """The policy in force: ``explicit`` (``--trust``), else ``$RMBUILD_TRUST``, else the
    project's ``rmbuild.toml``, else the user's ``config.toml``; None if none sets one."""
    cwd = Path.cwd()
    if explicit:
        return parse(explicit, "--trust", cwd)
    if value := os.environ.get(ENV):
        return parse(value, ENV, cwd)
    from rmbuild import config

    for path in reversed(config.config_files(start)):
        value = _setting(path)
        if value is not None:
            return parse(value, str(path), path.parent, file=path)
    return None


def _setting(path: Path) -> str | None:
    import tomllib

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"config file is not valid TOML: {exc}", file=path) from None
    except OSError as exc:
        raise SpecError(f"cannot read config file: {exc.strerror or exc}", file=path) from None
    value = doc.get(SETTING)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(
            f"must be a string, not {type(value).__name__}",
            file=path,
            field=SETTING,
            hint='trust = "signed-by:KEY.pub"',
        )
    return value


def enforce(store: Store, record: ArtifactRecord, policy: Policy) -> Finding:
    """The signature that makes ``record`` trusted; UntrustedArtifact (exit 6) otherwise."""
    from rmbuild.trust.signatures import judge_stored

    judgement = judge_stored(store, record, policy.root())
    trusted = judgement.trusted
    if trusted is None:
        raise judgement.refusal(policy.describe())
    return trusted


def check_loadable(store: Store, record: ArtifactRecord, trust: str | None = None) -> None:
    """The loader's check: nothing without a policy; else :func:`enforce`."""
    policy = resolve(trust)
    if policy is not None:
        enforce(store, record, policy)


def pull_admission(
    trust: str | None = None,
) -> Callable[[RemoteEntry, Manifest, list[Attachment]], None] | None:
    """A pull's admission check under the policy in force (None without one): refuses,
    before anything enters the store, what :func:`enforce` would refuse."""
    policy = resolve(trust)
    if policy is None:
        return None
    root = policy.root()  # a bad key file fails before any download

    def admit(entry: RemoteEntry, manifest: Manifest, found: list[Attachment]) -> None:
        from rmbuild.trust.signatures import files_of, judge

        # Only the model signature decides: the provenance blob is not in the store yet;
        # `verify --signature` reports its signature once the artifact is here.
        judgement = judge(entry.key, files_of(manifest), found, root)
        if judgement.trusted is None:
            refusal = judgement.refusal(policy.describe())
            refusal.message += " (refused; nothing of it entered the local store)"
            raise refusal

    return admit
