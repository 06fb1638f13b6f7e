"""Registry credentials from the standard Docker config file, for :mod:`artifact_store.oci`.

``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (Docker's own rule): the
credential helper its ``credHelpers`` names for the host, else its ``auths`` entry for the host
(``auth`` as base64 ``user:password``, ``username``/``password``, or an ``identitytoken``), else
the helper its ``credsStore`` names. Nothing here prints, logs or raises a secret: messages name
the file and the host, never what is in them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifact_store.errors import RemoteAuthError


@dataclass(frozen=True)
class Credentials:
    """A user name and its secret (a password, or an identity token where ``token``), and the
    file they came from (for messages). The secret never appears in a repr."""

    username: str
    secret: str = field(repr=False)
    source: str = ""
    token: bool = False


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (Docker's own rule)."""
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def _host_of(entry: str) -> str:
    """An ``auths`` key as a bare ``host[:port]`` (keys may be full URLs: https://h/v1/)."""
    if "://" in entry:
        entry = entry.split("://", 1)[1]
    return entry.split("/", 1)[0]


def find_credentials(host: str, display: str) -> Credentials | None:
    """The Docker config's credentials for ``host``, or None. RemoteAuthError where the file
    cannot be read or a credential helper it names fails (never quoting a secret)."""
    path = docker_config_path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RemoteAuthError(
            display, f"cannot read the Docker config {path}: {type(exc).__name__}"
        ) from None
    if not isinstance(doc, dict):
        raise RemoteAuthError(display, f"the Docker config {path} is not a JSON object")
    helpers = doc.get("credHelpers") or {}
    if isinstance(helpers, dict) and isinstance(helpers.get(host), str):
        return _from_helper(helpers[host], host, display, path)
    auths = doc.get("auths") or {}
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if _host_of(str(key)) != host or not isinstance(entry, dict):
            continue
        found = _from_auth_entry(entry, str(path))
        if found is not None:
            return found
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, host, display, path)
    return None


def _from_auth_entry(entry: Mapping[str, Any], source: str) -> Credentials | None:
    if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
        user = str(entry.get("username") or "<token>")
        return Credentials(user, entry["identitytoken"], source, token=True)
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, secret, source)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"], source)
    return None


def _from_helper(name: str, host: str, display: str, path: Path) -> Credentials | None:
    """Ask ``docker-credential-<name> get`` (the helper protocol: the host on stdin, a JSON
    object with Username and Secret on stdout). A host the helper does not know is None."""
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [program, "get"], input=host.encode(), capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RemoteAuthError(
            display,
            f"the credential helper {program} that {path} names could not run "
            f"({type(exc).__name__}); install it or remove it from the file",
        ) from None
    if done.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        doc = json.loads(done.stdout)
        user, secret = str(doc["Username"]), str(doc["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RemoteAuthError(display, f"{program} answered something that is not JSON") from None
    return Credentials(user, secret, f"{path} ({program})", token=user == "<token>")


def basic_auth(creds: Credentials) -> str:
    return base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()
