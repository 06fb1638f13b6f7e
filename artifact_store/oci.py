"""A remote cache in an OCI registry: ``oci://host[:port]/repo`` (see docs/oci.md).

The same interface as :class:`artifact_store.remote.Remote` (get, list, resolve, push, pull,
tag), so ``rmbuild push/pull/ls --remote oci://…`` and a build's remote hooks work alike.
Layout in the repository:

* each artifact is one OCI image manifest tagged with its key: its layers are the artifact's
  blobs as they are (raw, uncompressed: a layer's digest is the file's SHA-256, the value a
  signature records), its config is the artifact's rmbuild manifest (media type
  :data:`~artifact_store.oci_layout.CONFIG_TYPE`), its annotations carry what a serving host
  filters on (model, target, backend, toolchain, device class, key) and the artifact's index
  row (:mod:`artifact_store.oci_layout`);
* an alias is one more tag on that manifest;
* an action result whose files were not pushed is a small manifest tagged ``_result.<key>``;
* attachments (signatures, attestations) are OCI 1.1 referrers of the artifact's manifest
  (:mod:`artifact_store.oci_referrers`).

Write order makes a half push invisible, as on the fsspec remote: every blob first, then the
manifest under its key's tag (the registry refuses a manifest naming a blob it lacks), then
aliases and referrers. A re-push asks for each blob with a HEAD and uploads none it has. Pulls
never trust the registry: every blob is hashed while it streams into the store's ``tmp/`` and
installed only after all of the artifact's blobs matched (else :class:`RemoteCorrupt`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_store import oci_client, oci_referrers, transfer
from artifact_store import oci_layout as layout
from artifact_store.admission import admit_held, admit_pulled, adopt_names, blobs_to_fetch
from artifact_store.entries import RemoteEntry, find_entry, with_aliases
from artifact_store.errors import (
    ArtifactCorrupt,
    ArtifactNotFound,
    CorruptManifest,
    InvalidAlias,
    InvalidArgument,
    RemoteCorrupt,
    RemoteError,
    StoreError,
)
from artifact_store.hashing import hash_bytes, is_digest
from artifact_store.names import HEX_RE, NAME_RE, check_key
from artifact_store.oci_layout import EMPTY_DATA, TAG_RE
from artifact_store.records import ArtifactRecord, Manifest
from artifact_store.remote import Admit, OnProgress, TransferReport

if TYPE_CHECKING:
    from artifact_store.results import ActionResult
    from artifact_store.store import Store

Describe = Callable[[RemoteEntry], Mapping[str, str]]


@dataclass
class OCIReport(TransferReport):
    """A :class:`TransferReport` that also names each pushed key's manifest digest
    (``sha256:<hex>``): what ``rmbuild pull sha256:<hex>`` and a serving host pin."""

    digests: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Doc:
    """An artifact's OCI manifest as read: its digest (hex), bytes, and the parsed entry."""

    digest: str
    data: bytes
    entry: RemoteEntry


class OCIRemote:
    """A remote cache in the OCI registry repository ``url`` (``oci://host[:port]/repo``).

    ``options`` (the ``[remote_options]`` table): ``plain_http`` (talk HTTP, not HTTPS, to a
    host that is not loopback), ``ca_file`` (a private CA's bundle), ``timeout`` (seconds).
    ``describe`` adds annotations about an entry that need more than the store knows (the
    device class of the profile that built it). Picklable, like :class:`Remote`.
    """

    def __init__(
        self,
        url: str,
        *,
        options: Mapping[str, Any] | None = None,
        jobs: int = 8,
        describe: Describe | None = None,
    ) -> None:
        self.options = dict(options or {})
        plain = self.options.get("plain_http")
        if isinstance(plain, str):  # from the environment or a hand-written string
            plain = plain.strip().lower() in ("1", "true", "yes", "on")
        address = layout.parse_url(url, plain_http=None if plain is None else bool(plain))
        self.url = address.display
        self.display = address.display
        self.jobs = max(1, jobs)
        self.describe = describe
        self.client = oci_client.Client(
            address,
            timeout=float(self.options.get("timeout") or oci_client.TIMEOUT_S),
            ca_file=self.options.get("ca_file"),
        )
        self._docs: dict[str, _Doc] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OCIRemote({self.display!r})"

    def __getstate__(self) -> dict[str, Any]:
        keep = ("url", "options", "jobs", "describe")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("url"), **state)  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        """No filesystem: what reaches for one (``gc --remote``) is told why, exit 10."""
        raise RemoteError(
            self.display,
            "an OCI registry is not a filesystem; it collects its own garbage (for the "
            "distribution registry: `registry garbage-collect CONFIG` after deleting tags)",
        )

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """As :meth:`Remote._errors`: store errors pass, anything else names this remote."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            detail = self.client.scrub(str(exc)) or type(exc).__name__
            raise RemoteError(self.display, f"{what}: {detail}") from None

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.jobs == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="rmb-oci") as pool:
            return list(pool.map(fn, items))

    # ---- reading -------------------------------------------------------------------------------

    def _read(self, ref: str, *, key: str | None = None) -> _Doc | None:
        """The artifact manifest ``ref`` (a tag or ``sha256:<hex>``) names, checked: its bytes
        hash to the digest the registry (or ``ref``) says, it is an rmbuild artifact, its
        entry names ``key`` where given. None if the registry has no such manifest."""
        found = self.client.get_manifest(ref)
        if found is None:
            return None
        data, said = found
        digest = hash_bytes(data)
        pinned = ref.removeprefix("sha256:") if ref.startswith("sha256:") else None
        if said.removeprefix("sha256:") not in ("", digest) or pinned not in (None, digest):
            raise RemoteCorrupt(
                self.display, f"manifest {ref[:24]} does not hash to its digest; refused"
            )
        entry = layout.parse_artifact(data, self.display, ref, key)
        read = _Doc(digest, data, entry)
        with self._lock:
            self._docs[entry.key] = read
        return read

    def _doc(self, entry: RemoteEntry) -> _Doc:
        """The manifest ``entry`` was read from (resolve keeps it: a pull by digest pulls
        that manifest), else the one its key's tag names now."""
        with self._lock:
            held = self._docs.get(entry.key)
        if held is not None:
            return held
        read = self._read(layout.tag_of(entry.key), key=entry.key)
        if read is None:
            raise ArtifactNotFound(entry.key, f"not on the remote {self.display}")
        return read

    def get(self, key: str) -> RemoteEntry | None:
        """The entry for exactly ``key``, or None if the registry has no tag ``key``."""
        check_key(key)
        if not TAG_RE.fullmatch(key):
            return None
        read = self._read(key, key=key)
        return None if read is None else read.entry

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def _tag_digests(self, tags: list[str]) -> dict[str, str]:
        """``tag -> manifest digest (hex)`` for ``tags`` (HEADs, no bodies)."""
        found = self._map(self.client.manifest_digest, tags)
        return {t: d.removeprefix("sha256:") for t, d in zip(tags, found, strict=True) if d}

    def list(self) -> list[RemoteEntry]:
        """Every artifact the repository holds, newest first, each naming its aliases (tags
        that point at its manifest). Tags of manifests rmbuild did not push are skipped."""
        tags = [t for t in self.client.tags() if not layout.is_reserved(t)]
        keys = [t for t in tags if HEX_RE.fullmatch(t) and NAME_RE.fullmatch(t)]
        hexes = set(keys)
        others = [t for t in tags if t not in hexes]

        def read(tag: str) -> _Doc | None:
            with contextlib.suppress(RemoteCorrupt):
                return self._read(tag, key=tag)
            return None

        docs = {d.digest: d for d in self._map(read, keys) if d is not None}
        names: dict[str, set[str]] = {d: set() for d in docs}
        for tag, digest in self._tag_digests(others).items():
            if digest in names:
                names[digest].add(tag)
            elif (doc := read(tag)) is not None:  # an artifact whose key is not hex
                docs[doc.digest] = doc
                names[doc.digest] = set()
        out = [with_aliases(d.entry, tuple(sorted(names[g]))) for g, d in docs.items()]
        return sorted(out, key=lambda e: e.created_at, reverse=True)

    def aliases_of(self, digest: str) -> list[str]:
        """The alias tags pointing at manifest ``digest``."""
        tags = [
            t for t in self.client.tags() if not layout.is_reserved(t) and not HEX_RE.fullmatch(t)
        ]
        return sorted(t for t, d in self._tag_digests(tags).items() if d == digest)

    def resolve(self, ref: str) -> RemoteEntry:
        """An entry by manifest digest (``sha256:<hex>``, pinned: that manifest is what a pull
        then fetches), full key, alias, unique key prefix, or ``model:target`` (newest)."""
        pinned = ref.removeprefix("@")
        if pinned.startswith("sha256:") and is_digest(pinned[7:]):
            read = self._read(pinned)
            if read is None:
                raise ArtifactNotFound(ref, f"no manifest {pinned[:19]} on {self.display}")
            return read.entry
        if TAG_RE.fullmatch(ref) and not layout.is_reserved(ref):
            read = self._read(ref)
            if read is not None:
                if read.entry.key == ref:
                    return read.entry
                return with_aliases(read.entry, tuple(sorted({*read.entry.aliases, ref})))
        return find_entry(self.list(), ref, self.display)

    # ---- push ----------------------------------------------------------------------------------

    def push(
        self,
        store: Store,
        keys: Iterable[str],
        *,
        parents: bool = True,
        on_progress: OnProgress | None = None,
    ) -> OCIReport:
        """Upload artifacts ``keys`` (and, with ``parents``, their upstream stages), as
        :meth:`Remote.push`: a key already tagged is left as it is (first writer wins), its
        aliases and attachments still go; a local artifact that fails its check is refused;
        on any failure no new tag is visible and pushing again finishes the job."""
        t0 = time.monotonic()
        report = OCIReport()
        records = _closure(store, keys, parents)
        for record in records:
            layout.tag_of(record.key)
            for alias in record.aliases:
                try:
                    layout.tag_of(alias)
                except InvalidArgument as exc:
                    raise InvalidAlias(alias, str(exc)) from None
        docs: dict[str, _Doc] = {}
        todo: list[tuple[ArtifactRecord, Manifest]] = []
        for record in records:
            there = self._read(record.key, key=record.key)
            if there is not None:
                report.present.append(record.key)
                docs[record.key] = there
                continue
            problems = store.check(record)
            if problems and problems[0].absent:
                report.absent.append(record.key)
                continue
            if problems:
                raise ArtifactCorrupt(record.key, problems)
            todo.append((record, store.get_manifest(record.manifest_digest)))
        blobs: dict[str, int] = {}
        for record, manifest in todo:
            blobs[manifest.digest] = len(manifest.to_json())
            for entry in manifest.files.values():
                blobs[entry.digest] = entry.size
            for digest in RemoteEntry.of(record).blobs:
                blobs[digest] = store.blob_path(digest).stat().st_size
        with store.writing():  # gc must not sweep a blob while it is being read for upload
            have = self._map(self.client.blob_size, list(blobs))
            missing = [d for d, n in zip(blobs, have, strict=True) if n != blobs[d]]
            counter = transfer.Counter(sum(blobs[d] for d in missing), on_progress)
            counter.advance(0)
            self._map(
                lambda d: self.client.upload_blob(d, blobs[d], store.blob_path(d), counter.advance),
                missing,
            )
            # Manifests last: from here on, each artifact is visible, whole.
            for record, manifest in todo:
                entry = RemoteEntry.of(record)
                sizes = {d: blobs[d] for d in entry.blobs}
                extra = self.describe(entry) if self.describe is not None else None
                data = layout.artifact_manifest(entry, manifest, sizes, extra)
                self.client.put_manifest(record.key, data)
                docs[record.key] = _Doc(hash_bytes(data), data, with_aliases(entry, ()))
                with self._lock:
                    self._docs[record.key] = docs[record.key]
            for record in records:
                doc = docs.get(record.key)
                if doc is None:
                    continue  # absent here: the store that holds its files pushes it
                report.digests[record.key] = f"sha256:{doc.digest}"
                # Every alias, also of keys already there: `tag` then `push` moves an alias.
                for alias in record.aliases:
                    self.client.put_manifest(alias, doc.data)
                    report.aliases[alias] = record.key
                # Signatures made after the first push still reach it.
                oci_referrers.push(self, store, doc.digest, len(doc.data), record.manifest_digest)
        if parents:
            from artifact_store.results import push_results

            push_results(self, store, keys)
        report.keys = [r.key for r, _ in todo]
        report.blobs = len(missing)
        report.bytes = counter.total
        report.seconds = time.monotonic() - t0
        return report

    def ensure_blob(self, data: bytes) -> str:
        """Upload small ``data`` as a blob unless the registry has it; its digest."""
        digest = hash_bytes(data)
        if self.client.blob_size(digest) != len(data):
            self.client.upload_blob(digest, len(data), data, None)
        return digest

    def tag(self, alias: str, key: str) -> None:
        """Point remote alias ``alias`` at ``key`` (which the registry must hold)."""
        entry = self.get(key)
        if entry is None:
            raise ArtifactNotFound(key, f"not on the remote {self.display}")
        self.client.put_manifest(layout.tag_of(alias), self._doc(entry).data)

    # ---- action results ------------------------------------------------------------------------

    def read_result(self, key: str) -> ActionResult | None:
        """``key``'s action result recorded by :meth:`write_result`, or None."""
        check_key(key)
        tag = layout.RESULT_TAG + key
        found = self.client.get_manifest(tag) if TAG_RE.fullmatch(tag) else None
        return None if found is None else layout.parse_result(found[0], self.display, key)

    def write_result(self, result: ActionResult) -> None:
        """Record ``result`` (a key whose files the pushing store lacks) under its tag."""
        data = layout.result_manifest(result, self.ensure_blob(EMPTY_DATA))
        self.client.put_manifest(layout.tag_of(layout.RESULT_TAG + result.key), data)

    # ---- pull ----------------------------------------------------------------------------------

    def pull(
        self,
        store: Store,
        entry: RemoteEntry | str,
        *,
        on_progress: OnProgress | None = None,
        admit: Admit | None = None,
    ) -> ArtifactRecord:
        """Download one artifact into ``store`` and commit it, as :meth:`Remote.pull`: every
        blob verified against its digest before anything enters the store; the registry's
        aliases and attachments (referrers) come along; ``admit`` sees the verified manifest
        and every attachment first, and what it raises refuses the pull."""
        if isinstance(entry, str):
            entry = self.resolve(entry)
        doc = self._doc(entry)
        local = store.get(entry.key)
        if local is not None and not store.check(local):
            admit_held(
                store,
                entry,
                local,
                oci_referrers.fetch(self, doc.digest, local.manifest_digest),
                admit,
            )
            self._pull_results(store, entry)
            return local
        with store.writing():
            tmp = store.tmpdir("pull-")
            try:
                manifest = self._pull_manifest(entry)
                sizes, need = blobs_to_fetch(store, entry, manifest)
                counter = transfer.Counter(sum(sizes[d] or 0 for d in need), on_progress)
                counter.advance(0)

                def fetch(digest: str) -> tuple[str, Path]:
                    try:
                        path = self._download(digest, sizes[digest], tmp, counter.advance)
                    except transfer.DigestMismatch as exc:
                        raise RemoteCorrupt(
                            self.display,
                            f"{exc}; refused, nothing entered the local store "
                            f"(artifact {entry.key[:12]})",
                        ) from None
                    except FileNotFoundError:
                        raise RemoteCorrupt(
                            self.display,
                            f"blob {digest[:12]} of artifact {entry.key[:12]} is missing",
                        ) from None
                    return digest, path

                fetched = self._map(fetch, need)
                found = oci_referrers.fetch(self, doc.digest, manifest.digest)
                record = admit_pulled(store, entry, manifest, fetched, found, admit)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        adopt_names(store, entry, record, self.aliases_of(doc.digest))
        self._pull_results(store, entry)
        return store.get(entry.key) or record

    def _pull_results(self, store: Store, entry: RemoteEntry) -> None:
        """The chain's action results, never its files; best effort (see Remote)."""
        from artifact_store.results import pull_chain

        with contextlib.suppress(RemoteError):
            pull_chain(self, store, entry)

    def _download(self, digest: str, size: int | None, tmp: Path, advance: Any) -> Path:
        """Blob ``digest`` streamed into a new file in ``tmp``, hashed on the way; the file
        (fsynced, read-only) once it is ``digest``, else DigestMismatch (and no file)."""
        fd, name = tempfile.mkstemp(prefix="pull-", dir=tmp)
        path = Path(name)
        try:
            got, arrived = self.client.read_blob(digest, fd, advance)
            if got != digest or (size is not None and arrived != size):
                raise transfer.DigestMismatch(
                    digest, arrived=arrived, expected_size=size, got_digest=got
                )
            os.fsync(fd)
            os.fchmod(fd, transfer.BLOB_MODE)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return path

    def _pull_manifest(self, entry: RemoteEntry) -> Manifest:
        digest = entry.manifest_digest
        try:
            data = self.client.get_blob(digest)
        except FileNotFoundError:
            raise RemoteCorrupt(
                self.display, f"manifest {digest[:12]} of artifact {entry.key[:12]} is missing"
            ) from None
        if hash_bytes(data) != digest:
            raise RemoteCorrupt(
                self.display,
                f"manifest {digest[:12]} does not match its digest; refused, nothing entered "
                f"the local store (artifact {entry.key[:12]})",
            )
        try:
            return Manifest.from_json(data, digest)
        except CorruptManifest as exc:
            raise RemoteCorrupt(self.display, str(exc)) from None


def _closure(store: Store, keys: Iterable[str], parents: bool) -> list[ArtifactRecord]:
    """The records of ``keys`` and (with ``parents``) the upstream stages they name."""
    seen: dict[str, ArtifactRecord] = {}
    stack = list(keys)
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        record = store.get(key)
        if record is None:
            if seen and parents:
                continue  # an upstream stage gc evicted: the artifact stands on its own
            raise ArtifactNotFound(key)
        seen[key] = record
        if parents:
            stack += [p for p in record.metadata.get("parents", []) if isinstance(p, str)]
    return list(seen.values())
