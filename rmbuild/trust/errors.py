"""The trust package's typed errors (see README "Exit codes").

An artifact refused by a trust policy is exit 6, like any artifact that must not run here; a
signing request the command line gets wrong (a missing key file, a key of the wrong type) is
exit 2; Sigstore's keyless signing without a network is exit 10, the code of a remote service
that cannot be reached; the signing library missing is exit 7, like any extra not installed.
"""

from __future__ import annotations

from rmbuild.errors import (
    EXIT_REMOTE,
    BackendUnavailable,
    IncompatibleArtifact,
    RmbuildError,
    UsageError,
)


class UntrustedArtifact(IncompatibleArtifact):
    """An artifact the trust policy refuses: unsigned, signed by another key, a signature that
    does not verify, or a file changed since signing (named). Exit 6, before any byte of it
    reaches a vendor runtime or enters the store."""

    code = "artifact-untrusted"


class SignatureInvalid(IncompatibleArtifact):
    """``rmbuild verify --signature`` found no signature of the artifact that holds (exit 6),
    each one's reason in the context."""

    code = "signature-invalid"


class SigningKeyError(UsageError):
    """A key, certificate or chain file that cannot be used: missing, unreadable, not PEM, a
    key type the OpenSSF Model Signing key method does not take, an expired certificate."""

    code = "signing-key-error"


class SigningUnavailable(BackendUnavailable):
    """The ``model-signing`` library is not installed (``pip install 'rmbuild[sign]'``)."""

    code = "signing-unavailable"


class KeylessUnavailable(RmbuildError):
    """Sigstore keyless signing needs the network (an OIDC provider, Fulcio, Rekor): where it
    cannot be reached, exit 10, saying to sign with a key instead."""

    code = "sigstore-unreachable"
    exit_code = EXIT_REMOTE
