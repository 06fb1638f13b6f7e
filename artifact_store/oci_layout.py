"""What rmbuild writes into an OCI registry (see docs/oci.md): the remote's address, media
types, annotations, tags, and the manifests of an artifact and of an action result.

An artifact is one OCI image manifest with CNCF ModelPack's ``artifactType``: its layers are the
artifact's blobs as they are (raw: a layer's digest is the file's SHA-256), typed with ModelPack's
``.raw`` layer media types and annotated with the file's path; its config is rmbuild's own
manifest (ModelPack's config describes a model's architecture, which a compiled artifact's
consumer does not need; the rmbuild manifest is what the artifact's content digest and its
signatures are about). The manifest's annotations carry what a serving host filters on.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from artifact_store.entries import RemoteEntry, with_aliases
from artifact_store.errors import InvalidArgument, RemoteCorrupt
from artifact_store.records import Manifest, canonical_json

if TYPE_CHECKING:
    from artifact_store.results import ActionResult

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
# The OCI 1.1 empty descriptor: the config of an artifact that needs none.
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
# The distribution spec's grammar for repository names and tags.
REPO_RE = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# The OCI 1.1 referrers fallback tag: sha256-<subject hex>.
FALLBACK_RE = re.compile(r"sha256-[0-9a-f]{64}")
# CNCF ModelPack's artifact type: a serving host that knows ModelPack sees a model.
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
# The config is rmbuild's own manifest (path -> digest, size, mode), not ModelPack's config.
CONFIG_TYPE = "application/vnd.rmbuild.manifest.v1+json"
RESULT_TYPE = "application/vnd.rmbuild.result.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
LOG = "text/plain"
PROVENANCE = "application/vnd.in-toto+json"
OCTET = "application/octet-stream"
# Annotations: ModelPack's file path, the OCI title (so `oras pull` writes the files where they
# belong), and rmbuild's own keys.
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
PREFIX = "dev.rmbuild."
ENTRY = PREFIX + "entry"
KEY = PREFIX + "key"
RESULT = PREFIX + "result"
ROLE = PREFIX + "role"
DEVICE_CLASS = PREFIX + "device-class"
# Tags that are not artifacts nor aliases: an alias starts with a letter or digit, so "_"
# cannot clash with one.
RESULT_TAG = "_result."
_CONFIG_NAMES = {"tokenizer.model", "vocab.txt", "merges.txt"}
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".txt", ".tiktoken")
_DOC_SUFFIXES = (".md", ".rst")
_CODE_SUFFIXES = (".py", ".sh", ".j2")


@dataclass(frozen=True)
class Address:
    """Where a remote lives: ``host`` (with its port), ``repo``, and the scheme to talk."""

    host: str
    repo: str
    plain_http: bool

    @property
    def base(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    @property
    def display(self) -> str:
        return f"oci://{self.host}/{self.repo}"


def parse_url(url: str, *, plain_http: bool | None = None) -> Address:
    """``oci://host[:port]/repo`` as an :class:`Address`; ValueError saying what is wrong.

    A loopback host is spoken to over plain HTTP (as Docker does for local registries), any
    other over HTTPS unless ``plain_http`` says otherwise.
    """
    parts = urlsplit(url)
    if parts.scheme != "oci":
        raise ValueError(f"not an oci:// URL: {url!r}")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ValueError("an oci:// URL carries no user, password, query or fragment")
    host = parts.netloc
    repo = parts.path.strip("/")
    if not host or not parts.hostname:
        raise ValueError("no registry host: write oci://host[:port]/repository")
    if not repo:
        raise ValueError(f"no repository after the host: write oci://{host}/repository")
    if ":" in repo or "@" in repo:
        raise ValueError(
            f"{repo!r} names a tag or digest: the URL names the repository only (each "
            "artifact is a tag in it)"
        )
    if len(repo) > 255 or not REPO_RE.fullmatch(repo):
        raise ValueError(
            f"{repo!r} is not a repository name: lowercase letters, digits and the separators "
            "'.', '_', '__', '-' and '/' between them"
        )
    if plain_http is None:
        plain_http = _loopback(parts.hostname)
    return Address(host=host, repo=repo, plain_http=plain_http)


def _loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def media_type(path: str) -> str:
    """The ModelPack layer media type of file ``path`` of an artifact."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.startswith(("readme", "license", "licence", "notice")) or name.endswith(_DOC_SUFFIXES):
        return DOC
    if name in _CONFIG_NAMES or name.endswith(_CONFIG_SUFFIXES):
        return WEIGHT_CONFIG
    if name.endswith(_CODE_SUFFIXES):
        return CODE
    return WEIGHT


def tag_of(name: str) -> str:
    """``name`` (a key or an alias) as a tag; InvalidArgument where OCI cannot hold it."""
    if not TAG_RE.fullmatch(name) or FALLBACK_RE.fullmatch(name):
        raise InvalidArgument(
            f"{name[:40]!r} cannot be an OCI tag (at most 128 of [A-Za-z0-9._-], and not "
            "sha256-<digest>, the referrers' tag)"
        )
    return name


def is_reserved(tag: str) -> bool:
    """Tags that name neither an artifact nor an alias (results, referrer indexes)."""
    return tag.startswith("_") or bool(FALLBACK_RE.fullmatch(tag))


def artifact_manifest(
    entry: RemoteEntry,
    manifest: Manifest,
    sizes: Mapping[str, int],
    extra: Mapping[str, str] | None = None,
) -> bytes:
    """The OCI image manifest of an artifact (canonical JSON: the same artifact gives the same
    bytes, so the same digest, on every push). ``sizes``: the metadata blobs' sizes;
    ``extra``: more annotations (the device class)."""
    meta = entry.metadata
    layers = [
        {
            "mediaType": media_type(path),
            "digest": f"sha256:{f.digest}",
            "size": f.size,
            "annotations": {FILEPATH: path, TITLE: path},
        }
        for path, f in manifest.files.items()
    ]
    for digest in entry.blobs:
        role = "log" if digest == meta.get("log") else "metadata"
        role = "provenance" if digest == meta.get("provenance") else role
        layers.append(
            {
                "mediaType": {"log": LOG, "provenance": PROVENANCE}.get(role, OCTET),
                "digest": f"sha256:{digest}",
                "size": sizes[digest],
                "annotations": {ROLE: role},
            }
        )
    toolchain = meta.get("toolchain")
    toolchain_name = toolchain.get("name") if isinstance(toolchain, dict) else None
    facts = {
        CREATED: entry.created_at,
        KEY: entry.key,
        PREFIX + "model": entry.model,
        PREFIX + "target": entry.target,
        PREFIX + "backend": entry.backend,
        PREFIX + "toolchain": str(toolchain_name or ""),
        PREFIX + "profile": str(meta.get("profile") or ""),
        PREFIX + "manifest": entry.manifest_digest,
        **dict(extra or {}),
        # The index row (metadata, uses) without aliases: tags are the aliases' truth, and the
        # bytes must not change when an alias is added.
        ENTRY: with_aliases(entry, ()).to_json().decode(),
    }
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_TYPE,
            "digest": f"sha256:{manifest.digest}",
            "size": len(manifest.to_json()),
        },
        "layers": layers,
        "annotations": {k: v for k, v in facts.items() if v},
    }
    return canonical_json(doc)


def parse_artifact(data: bytes, remote: str, ref: str, key: str | None) -> RemoteEntry:
    """The entry an artifact manifest carries; RemoteCorrupt where it is not one rmbuild
    pushed, names another key than ``key``, or its config is not the manifest it names."""
    try:
        doc = json.loads(data)
        text = (doc.get("annotations") or {})[ENTRY]
        config = doc["config"]["digest"].removeprefix("sha256:")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RemoteCorrupt(remote, f"{ref[:24]} is not an artifact rmbuild pushed") from None
    entry = RemoteEntry.from_json(str(text).encode(), remote, key)
    if config != entry.manifest_digest:
        raise RemoteCorrupt(remote, f"{ref[:24]}: its config is not the manifest it names")
    return entry


def result_manifest(result: ActionResult, empty: str) -> bytes:
    """An action result as a manifest with no content of its own: the empty config and layer
    (blob ``empty``), the result in an annotation (read with one request)."""
    blank = {"mediaType": EMPTY, "digest": f"sha256:{empty}", "size": len(EMPTY_DATA)}
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": RESULT_TYPE,
        "config": blank,
        "layers": [blank],
        "annotations": {KEY: result.key, RESULT: result.to_json().decode()},
    }
    return canonical_json(doc)


def parse_result(data: bytes, remote: str, key: str) -> ActionResult:
    from artifact_store.results import ActionResult

    try:
        text = json.loads(data)["annotations"][RESULT]
    except (ValueError, KeyError, TypeError):
        raise RemoteCorrupt(remote, f"result {key[:12]} is not valid") from None
    return ActionResult.from_json(str(text).encode(), remote, key)
