"""A remote cache on any fsspec URL: s3://, gs://, az://, file://, memory://….

Layout under the URL, mirroring the local store's two tables (Bazel's CAS + action cache)::

    objects/ab/cdef…     blobs (file contents, manifests, logs), content-addressed
    entries/<key>.json   one per action key: the artifact row as JSON, metadata included
    aliases/<name>       the key an alias pointed at when it was pushed

Write order makes a half push invisible: every blob first, then the entry that names them,
then aliases. A reader only trusts entries, so an interrupted push leaves at most unreferenced
objects, and the retry uploads only what is missing (objects are immutable by name). Where the
store has atomic writes (object stores: a single PUT, or a multipart upload the server
assembles) blobs go straight to their names; elsewhere (``file://``, SFTP…) to a temp name
first, then moved. A push that fails removes its temp objects and aborts its S3 multipart
uploads; what a killed one leaves is collected later (:mod:`artifact_store.remote_gc`).

Pulls never trust the remote: every blob is downloaded into the local store's ``tmp/``,
hashed while it streams, and installed only after *all* of an artifact's blobs matched their
digests; a blob that does not is reported as :class:`RemoteCorrupt` and nothing of the
artifact enters the store.

Credentials come only from where the provider's SDK looks (environment, its config files,
instance metadata) or from ``storage_options`` the caller passes; this module never writes
them anywhere, and messages name the remote by :func:`redact_url` and pass through
:func:`scrub`.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from artifact_store import attachments, remote_gc, transfer
from artifact_store.admission import Admit, admit_held, admit_pulled, adopt_names, blobs_to_fetch
from artifact_store.entries import RemoteEntry, find_entry, redact_url, scrub, with_aliases
from artifact_store.errors import (
    ArtifactCorrupt,
    ArtifactNotFound,
    CorruptManifest,
    RemoteCorrupt,
    RemoteError,
)
from artifact_store.hashing import hash_bytes
from artifact_store.names import NAME_RE, check_key
from artifact_store.records import ArtifactRecord, Manifest
from artifact_store.remote_fs import RemoteFS

if TYPE_CHECKING:
    from artifact_store.store import Store

# Importable from here too: the remote's public names.
__all__ = ["Remote", "RemoteEntry", "TransferReport", "redact_url", "scrub"]

OnProgress = Callable[[int, int], None]


@dataclass
class TransferReport:
    """What a push or pull moved: keys done, keys already there, blobs and bytes moved, and
    (push) the aliases written, as ``alias -> key``."""

    keys: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    # (push) keys of a shared index whose files this store does not hold: not pushed from
    # here; the store that holds them pushes them.
    absent: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    blobs: int = 0
    bytes: int = 0
    seconds: float = 0.0


class Remote(RemoteFS):
    """A remote cache at an fsspec ``url`` (its filesystem side: :class:`RemoteFS`); see the
    module docstring.

    ``storage_options`` go to the filesystem (e.g. ``endpoint_url`` for an S3-compatible
    server); ``jobs`` is how many transfers run at once. Picklable (the filesystem is opened
    again on the other side), so a build worker process can take one along.
    """

    # ---- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> RemoteEntry | None:
        """The entry for exactly ``key``, or None if the remote has none."""
        check_key(key)
        with self._errors(f"reading entry {key[:12]}"):
            try:
                data = self.fs.cat_file(self.entry_path(key))
            except FileNotFoundError:
                return None
        return RemoteEntry.from_json(data, self.display, key)

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def list(self) -> list[RemoteEntry]:
        """Every entry the remote holds, newest first (entries that do not parse skipped)."""
        with self._errors("listing entries"):
            fs = self.fs
            fs.invalidate_cache()
            try:
                names = fs.ls(self._path("entries"), detail=False)
            except FileNotFoundError:
                return []
            paths = [n for n in names if n.endswith(".json")]
            found = fs.cat(paths, on_error="omit") if paths else {}
            aliases = self._aliases()
        entries = []
        for data in found.values():
            if isinstance(data, bytes):
                with contextlib.suppress(RemoteCorrupt):
                    entries.append(RemoteEntry.from_json(data, self.display))
        out = []
        for e in entries:
            named = tuple(sorted(a for a, k in aliases.items() if k == e.key))
            out.append(with_aliases(e, named) if named else e)
        return sorted(out, key=lambda e: e.created_at, reverse=True)

    def _aliases(self) -> dict[str, str]:
        fs = self.fs
        try:
            names = fs.ls(self._path("aliases"), detail=False)
        except FileNotFoundError:
            return {}
        found = fs.cat(list(names), on_error="omit") if names else {}
        return {
            p.rsplit("/", 1)[-1]: v.decode().strip()
            for p, v in found.items()
            if isinstance(v, bytes)
        }

    def resolve(self, ref: str) -> RemoteEntry:
        """An entry by full key, alias, unique key prefix, or ``model:target`` (newest)."""
        if NAME_RE.fullmatch(ref):
            entry = self.get(ref)
            if entry is not None:
                return entry
            with self._errors(f"reading alias {ref}"):
                try:
                    key = self.fs.cat_file(self._path("aliases", ref)).decode().strip()
                except FileNotFoundError:
                    key = None
            if key and (entry := self.get(key)) is not None:
                # The alias file is the truth; the entry names the aliases it had when written.
                return with_aliases(entry, tuple(sorted({*entry.aliases, ref})))
        return find_entry(self.list(), ref, self.display)

    # ---- push ----------------------------------------------------------------------------------

    def push(
        self,
        store: Store,
        keys: Iterable[str],
        *,
        parents: bool = True,
        on_progress: OnProgress | None = None,
    ) -> TransferReport:
        """Upload artifacts ``keys`` (and, with ``parents``, their upstream stages).

        A key whose entry the remote already holds is left as it is (first writer wins, as in
        :meth:`Store.commit`). A local artifact that fails the store's integrity check is
        refused (ArtifactCorrupt) rather than spread. On any failure the local store is
        untouched and the remote shows no new entry; pushing again finishes the job.
        """
        t0 = time.monotonic()
        report = TransferReport()
        records = self._closure(store, keys, parents)
        todo: list[tuple[ArtifactRecord, Manifest]] = []
        # Entries already there that do not name all of the local aliases: an alias given
        # after the artifact was pushed (`compile --tag` with a remote pushes, then tags).
        retag: list[RemoteEntry] = []
        for record in records:
            there = self.get(record.key)
            if there is not None:
                report.present.append(record.key)
                if not set(record.aliases) <= set(there.aliases):
                    named = tuple(sorted({*there.aliases, *record.aliases}))
                    retag.append(with_aliases(there, named))
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
        # What earlier pushes left (see artifact_store.remote_gc); the journal this push's own
        # S3 multipart uploads are written down in.
        journal = remote_gc.before_push(self, store)
        with store.writing():  # gc must not sweep a blob while it is being read for upload
            missing = self._missing(blobs)
            counter = transfer.Counter(sum(blobs[d] for d in missing), on_progress)
            counter.advance(0)
            with self._errors("uploading"):
                self._map(
                    lambda d: self._put_file(
                        str(store.blob_path(d)), self.object_path(d), counter, blobs[d], journal
                    ),
                    missing,
                )
                # Entries last: from here on, each artifact is visible, whole.
                self._map(
                    lambda rm: self._put_bytes(
                        self.entry_path(rm[0].key), RemoteEntry.of(rm[0]).to_json()
                    ),
                    todo,
                )
                for entry in retag:
                    self._put_bytes(self.entry_path(entry.key), entry.to_json())
                # Every alias, also of keys already there: `tag` then `push` moves an alias.
                for record in records:
                    for alias in record.aliases:
                        self._put_bytes(self._path("aliases", alias), record.key.encode())
                        report.aliases[alias] = record.key
                # Signatures and attestations about the content (artifact_store.attachments),
                # of artifacts already there too: one made after the first push reaches it.
                attachments.push(self, store, [r.manifest_digest for r in records])
        if parents:
            # Upstream stages whose files this store lacks (it pulled only the final artifact)
            # still pass on their action results: what a puller needs to find the artifact.
            from artifact_store.results import push_results

            push_results(self, store, keys)
        report.keys = [r.key for r, _ in todo]
        report.blobs = len(missing)
        report.bytes = counter.total
        report.seconds = time.monotonic() - t0
        return report

    def _closure(self, store: Store, keys: Iterable[str], parents: bool) -> list[ArtifactRecord]:
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

    def _missing(self, blobs: Mapping[str, int]) -> list[str]:
        """Blobs the remote lacks, or holds at another size (a torn upload elsewhere)."""

        def lacks(digest: str) -> bool:
            try:
                info = self.fs.info(self.object_path(digest))
            except FileNotFoundError:
                return True
            return int(info.get("size") or 0) != blobs[digest]

        with self._errors("checking objects"):
            flags = self._map(lacks, list(blobs))
        return [d for d, lack in zip(blobs, flags, strict=True) if lack]

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.jobs == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="rmb-xfer") as pool:
            return list(pool.map(fn, items))

    def tag(self, alias: str, key: str) -> None:
        """Point remote alias ``alias`` at ``key`` (which the remote must hold)."""
        entry = self.get(key)
        if entry is None:
            raise ArtifactNotFound(key, f"not on the remote {self.display}")
        with self._errors(f"writing alias {alias}"):
            if alias not in entry.aliases:
                named = with_aliases(entry, tuple(sorted({*entry.aliases, alias})))
                self._put_bytes(self.entry_path(key), named.to_json())
            self._put_bytes(self._path("aliases", alias), key.encode())

    # ---- pull ----------------------------------------------------------------------------------

    def pull(
        self,
        store: Store,
        entry: RemoteEntry | str,
        *,
        on_progress: OnProgress | None = None,
        admit: Admit | None = None,
    ) -> ArtifactRecord:
        """Download one artifact (an entry, or a ref for :meth:`resolve`) into ``store`` and
        commit it; returns the local record.

        Every blob is verified against its digest before it enters the store; if any fails,
        RemoteCorrupt is raised and nothing of the artifact is installed or committed. An
        artifact the store already holds intact is not downloaded again.

        The remote's aliases of the artifact come along: each one the local index does not
        have yet is set here (a local alias of the same name that points at another artifact
        is left as it is; pulling by that alias moves it, see ``rmbuild pull``).

        The remote's attachments about the content (signatures; :mod:`artifact_store.
        attachments`) come along. ``admit``, where given, sees the verified manifest and every
        attachment before anything is installed; what it raises refuses the pull, and nothing
        of the artifact enters the store (one already held is left as it was).
        """
        if isinstance(entry, str):
            entry = self.resolve(entry)
        local = store.get(entry.key)
        if local is not None and not store.check(local):
            admit_held(store, entry, local, attachments.fetch(self, local.manifest_digest), admit)
            self._pull_results(store, entry)
            return local
        with store.writing():
            tmp = store.tmpdir("pull-")
            try:
                manifest = self._pull_manifest(entry)
                sizes, need = blobs_to_fetch(store, entry, manifest)
                counter = transfer.Counter(sum(sizes[d] or 0 for d in need), on_progress)
                counter.advance(0)

                def fetch(digest: str) -> tuple[str, Any]:
                    with self._errors(f"downloading object {digest[:12]}"):
                        try:
                            path = transfer.download(
                                self.fs,
                                self.object_path(digest),
                                digest,
                                sizes[digest],
                                tmp,
                                jobs=self.jobs,
                                part_size=self.part_size,
                                advance=counter.advance,
                            )
                        except transfer.DigestMismatch as exc:
                            raise RemoteCorrupt(
                                self.display,
                                f"{exc}; refused, nothing entered the local store "
                                f"(artifact {entry.key[:12]})",
                            ) from None
                        except FileNotFoundError:
                            raise RemoteCorrupt(
                                self.display,
                                f"object {digest[:12]} of artifact {entry.key[:12]} is missing",
                            ) from None
                    return digest, path

                fetched = self._map(fetch, need)
                found = attachments.fetch(self, manifest.digest)
                record = admit_pulled(store, entry, manifest, fetched, found, admit)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        with self._errors("reading aliases"):
            named = {a for a, k in self._aliases().items() if k == entry.key}
        adopt_names(store, entry, record, named)
        self._pull_results(store, entry)
        return store.get(entry.key) or record

    def _pull_results(self, store: Store, entry: RemoteEntry) -> None:
        """The action results of the artifact's upstream stages, never their files (see
        :mod:`artifact_store.results`): what this store needs to find the artifact by its key.
        Best effort: the artifact is here either way, and a build resolves a result it lacks
        from the remote, or rebuilds the stage."""
        from artifact_store.results import pull_chain

        with contextlib.suppress(RemoteError):
            pull_chain(self, store, entry)

    def _pull_manifest(self, entry: RemoteEntry) -> Manifest:
        digest = entry.manifest_digest
        with self._errors(f"downloading manifest {digest[:12]}"):
            try:
                data = self.fs.cat_file(self.object_path(digest))
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
            manifest = Manifest.from_json(data, digest)
        except CorruptManifest as exc:
            raise RemoteCorrupt(self.display, str(exc)) from None
        return manifest  # Store.commit stores its bytes, after every file blob is in
