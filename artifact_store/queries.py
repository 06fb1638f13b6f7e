"""The store's read queries at scale, a mixin of :class:`~artifact_store.store.Store`.

Listing (filters, limit and the shown metadata in SQL), counting, id resolution (a prefix is a
range on the key's index) and gc's snapshot queries. A SQLite index at head is read through
the sqlite3 fast path (:mod:`artifact_store.reader`); anything else through SQLAlchemy, imported
inside the methods. :meth:`Queries.iter_list` streams a listing in batches, in constant memory.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from artifact_store.errors import AmbiguousRef, ArtifactNotFound
from artifact_store.names import HEX_RE, MIN_PREFIX
from artifact_store.reader import (
    ARTIFACT_COLUMNS,
    GC_LIVE_SQL,
    SUMMARY_KEYS,
    GcRow,
    alias_key_fast,
    count_fast,
    gc_index_fast,
    gc_live_fast,
    get_fast,
    keys_with_prefix_fast,
    list_fast,
    prefix_upper,
    record_of,
    summary_metadata,
)
from artifact_store.reader import _filters as _fast_filters
from artifact_store.records import ArtifactRecord

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy.engine import Connection, Engine

# Candidates an ambiguous prefix lists at most.
_MAX_CANDIDATES = 50
# Rows a streamed listing reads at a time: one IN list each for their aliases and uses, below
# SQLite's bound-parameter limit.
STREAM_BATCH = 500


class Queries:
    """Read queries of :class:`~artifact_store.store.Store` (see the module docstring)."""

    _reader: sqlite3.Connection | None

    if TYPE_CHECKING:

        @property
        def _reads(self) -> Engine: ...
        def _own(self, record: ArtifactRecord) -> ArtifactRecord: ...
        def _own_refs(
            self, keys: Iterable[str] | None = None
        ) -> dict[str, builtins.list[tuple[str, int]]]: ...

    def _select(
        self, conn: Connection, *where: Any, limit: int | None = None, summary: bool = False
    ) -> list[ArtifactRecord]:
        q, picked = self._list_query(conn, *where, limit=limit, summary=summary)
        rows = [dict(r) for r in conn.execute(q).mappings()]
        return self._records(conn, rows, summary=summary, picked=picked)

    @staticmethod
    def _list_query(
        conn: Connection, *where: Any, limit: int | None = None, summary: bool = False
    ) -> tuple[Any, bool]:
        """The SELECT of a listing, newest first, and whether the database picks the summary
        metadata (``picked``) rather than Python."""
        import sqlalchemy as sa

        from artifact_store import index

        t = index.artifacts
        cols: builtins.list[Any] = [c for c in t.c if c.name != "metadata"]
        picked = summary and conn.dialect.name in ("sqlite", "postgresql")
        if not picked:
            cols.append(t.c.metadata)
        elif conn.dialect.name == "sqlite":
            paths = [f"$.{k}" for k in SUMMARY_KEYS]
            cols.append(
                sa.type_coerce(sa.func.json_extract(t.c.metadata, *paths), sa.JSON).label("picked")
            )
        else:
            parts = [t.c.metadata.op("->")(k) for k in SUMMARY_KEYS]
            cols.append(sa.type_coerce(sa.func.json_build_array(*parts), sa.JSON).label("picked"))
        q = sa.select(*cols).where(*where).order_by(t.c.created_at.desc(), t.c.key)
        if limit is not None:
            q = q.limit(limit)
        return q, picked

    @staticmethod
    def _records(
        conn: Connection, rows: builtins.list[dict[str, Any]], *, summary: bool, picked: bool
    ) -> builtins.list[ArtifactRecord]:
        """Records of ``rows`` (a listing's), with their aliases and uses."""
        import sqlalchemy as sa

        from artifact_store import index

        a, u = index.aliases, index.artifact_uses
        for r in rows:
            if picked:
                r["metadata"] = summary_metadata(r.pop("picked"))
            elif summary:
                r["metadata"] = {k: v for k, v in r["metadata"].items() if k in SUMMARY_KEYS}
        if not rows:
            return []
        keys = [r["key"] for r in rows]
        names: dict[str, list[str]] = {}
        uses: dict[str, builtins.list[tuple[str, str]]] = {}
        q2 = sa.select(a.c.alias, a.c.key).order_by(a.c.alias)
        q3 = sa.select(u.c.model, u.c.target, u.c.key)
        if len(keys) <= 500:
            q2 = q2.where(a.c.key.in_(keys))
            q3 = q3.where(u.c.key.in_(keys))
        for alias, key in conn.execute(q2):
            names.setdefault(key, []).append(alias)
        for model, target, key in conn.execute(q3):
            uses.setdefault(key, []).append((model, target))
        return [
            ArtifactRecord(
                key=r["key"],
                manifest_digest=r["manifest_digest"],
                model=r["model"],
                target=r["target"],
                backend=r["backend"],
                created_at=r["created_at"],
                last_used_at=r["last_used_at"],
                size=r["size"],
                metadata=r["metadata"],
                aliases=tuple(names.get(r["key"], ())),
                # Sorted here, not by ORDER BY: a server's collation may differ from Python's
                # (and the fast path's) code-point order.
                uses=tuple(sorted(uses.get(r["key"], ()))),
                state=r["state"],
                problem=r["problem"],
            )
            for r in rows
        ]

    def resolve(self, ref: str) -> ArtifactRecord:
        """Find an artifact by exact key, alias, or unique hex prefix (>= 4 chars), like git.

        A prefix is a range on the key's index (``key >= p AND key < p + "g"``), O(log n)
        (``LIKE`` scanned every row). A SQLite index at head is read through sqlite3,
        so ``show`` does not import SQLAlchemy. The record is this store's (as :meth:`get`).
        """
        if self._reader is not None:
            return self._own(self._resolve_fast(ref))
        return self._own(self._resolve_row(ref))

    def _resolve_row(self, ref: str) -> ArtifactRecord:
        """:meth:`resolve` through SQLAlchemy, the index row as it is."""
        import sqlalchemy as sa

        from artifact_store import index

        t, a = index.artifacts, index.aliases
        with self._reads.connect() as conn:
            found = self._select(conn, t.c.key == ref)
            if found:
                return found[0]
            alias_key = conn.execute(sa.select(a.c.key).where(a.c.alias == ref)).scalar()
            if alias_key is not None:
                found = self._select(conn, t.c.key == alias_key)
                if found:
                    return found[0]
            if not ref or not HEX_RE.fullmatch(ref):
                raise ArtifactNotFound(ref)
            if len(ref) < MIN_PREFIX:
                raise ArtifactNotFound(
                    ref, f"prefix too short; give at least {MIN_PREFIX} hex characters"
                )
            p = ref.lower()
            found = self._select(
                conn, t.c.key >= p, t.c.key < prefix_upper(p), limit=_MAX_CANDIDATES
            )
            # A server collation other than code-point order may bound the range differently.
            found = [r for r in found if r.key.startswith(p)]
        if not found:
            raise ArtifactNotFound(ref)
        if len(found) > 1:
            raise AmbiguousRef(ref, found)
        return found[0]

    def _resolve_fast(self, ref: str) -> ArtifactRecord:
        """:meth:`resolve` through the sqlite3 reader (same answers, same errors)."""
        assert self._reader is not None
        conn = self._reader
        found = get_fast(conn, ref) if ref else None
        if found is None and (key := alias_key_fast(conn, ref)) is not None:
            found = get_fast(conn, key)
        if found is not None:
            return found
        if not ref or not HEX_RE.fullmatch(ref):
            raise ArtifactNotFound(ref)
        if len(ref) < MIN_PREFIX:
            raise ArtifactNotFound(
                ref, f"prefix too short; give at least {MIN_PREFIX} hex characters"
            )
        keys = keys_with_prefix_fast(conn, ref.lower(), _MAX_CANDIDATES)
        records = [r for r in (get_fast(conn, k) for k in keys) if r is not None]
        records.sort(key=lambda r: r.key)
        records.sort(key=lambda r: r.created_at, reverse=True)  # as _select orders them
        if not records:
            raise ArtifactNotFound(ref)
        if len(records) > 1:
            raise AmbiguousRef(ref, records)
        return records[0]

    def list(
        self,
        *,
        model: str | None = None,
        target: str | None = None,
        backend: str | None = None,
        limit: int | None = None,
        summary: bool = False,
    ) -> list[ArtifactRecord]:
        """Artifacts matching every given filter, newest first, at most ``limit``.

        ``model`` and ``target`` match an artifact's uses (see :meth:`add_use`), not only its
        first builder's: it is listed if any one use matches both. Filters and the limit are
        SQL; a SQLite index at head is read through sqlite3 (no SQLAlchemy rows).

        ``summary=True`` (``ls``): each record's metadata holds only the keys ``ls`` shows
        (:data:`~artifact_store.reader.SUMMARY_KEYS`), picked by the database, not decoded
        whole in Python for every row.
        """
        if self._reader is not None:
            return list_fast(
                self._reader,
                model=model,
                target=target,
                backend=backend,
                limit=limit,
                summary=summary,
            )
        with self._reads.connect() as conn:
            where = self._list_where(model, target, backend)
            return self._select(conn, *where, limit=limit, summary=summary)

    def count(
        self,
        *,
        model: str | None = None,
        target: str | None = None,
        backend: str | None = None,
        exclude_targets: Collection[str] = (),
    ) -> int:
        """How many artifacts :meth:`list` (or :meth:`iter_list` with the same
        ``exclude_targets``) would return without a limit."""
        if self._reader is not None:
            if not exclude_targets:
                return count_fast(self._reader, model=model, target=target, backend=backend)
            where, params = self._fast_where(model, target, backend, exclude_targets)
            sql = f"SELECT count(*) FROM artifacts AS a{where}"
            return int(self._reader.execute(sql, params).fetchone()[0])
        import sqlalchemy as sa

        from artifact_store import index

        q = sa.select(sa.func.count()).select_from(index.artifacts)
        q = q.where(*self._list_where(model, target, backend, exclude_targets))
        with self._reads.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def iter_list(
        self,
        *,
        model: str | None = None,
        target: str | None = None,
        backend: str | None = None,
        limit: int | None = None,
        summary: bool = False,
        exclude_targets: Collection[str] = (),
    ) -> Iterator[ArtifactRecord]:
        """:meth:`list`'s records, in its order, read and yielded :data:`STREAM_BATCH` rows at a
        time: the first comes after one batch, and memory stays flat however many there are
        (``ls --json`` of 100,000 artifacts). ``exclude_targets``: artifacts first built for
        these targets are left out (``ls`` hides internal artifacts such as compiler caches).

        The rows come from one statement, so one snapshot of the index, and each batch's aliases
        and uses are read in the same read transaction. Close the iterator (or exhaust it)
        before using the store for anything else on this thread.
        """
        if self._reader is not None:
            yield from self._iter_fast(model, target, backend, limit, summary, exclude_targets)
            return
        with self._reads.connect() as conn:
            where = self._list_where(model, target, backend, exclude_targets)
            q, picked = self._list_query(conn, *where, limit=limit, summary=summary)
            # A server-side cursor where the driver has one (PostgreSQL): rows arrive in
            # batches instead of all at once.
            result = conn.execution_options(stream_results=True).execute(q).mappings()
            for part in result.partitions(STREAM_BATCH):
                rows = [dict(r) for r in part]
                yield from self._records(conn, rows, summary=summary, picked=picked)

    def _iter_fast(
        self,
        model: str | None,
        target: str | None,
        backend: str | None,
        limit: int | None,
        summary: bool,
        exclude_targets: Collection[str],
    ) -> Iterator[ArtifactRecord]:
        """:meth:`iter_list` through sqlite3: the records :func:`list_fast` builds."""
        assert self._reader is not None
        conn = self._reader
        where, params = self._fast_where(model, target, backend, exclude_targets)
        cols = ", ".join(f"a.{c}" for c in ARTIFACT_COLUMNS)
        if summary:  # the shown keys, picked by SQLite (as list_fast does)
            paths = ", ".join(f"'$.{k}'" for k in SUMMARY_KEYS)
            cols = cols.replace("a.metadata", f"json_extract(a.metadata, {paths})")
        sql = f"SELECT {cols} FROM artifacts AS a{where} ORDER BY a.created_at DESC, a.key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        cursor = conn.execute(sql, params)
        try:
            while rows := cursor.fetchmany(STREAM_BATCH):
                keys = [r[0] for r in rows]
                marks = ", ".join("?" * len(keys))
                names: dict[str, builtins.list[str]] = {}
                uses: dict[str, builtins.list[tuple[str, str]]] = {}
                for alias, key in conn.execute(
                    f"SELECT alias, key FROM aliases WHERE key IN ({marks})", keys
                ):
                    names.setdefault(key, []).append(alias)
                for m, t, key in conn.execute(
                    f"SELECT model, target, key FROM artifact_uses WHERE key IN ({marks})", keys
                ):
                    uses.setdefault(key, []).append((m, t))
                for r in rows:
                    yield record_of(r, names, uses, summary=summary)
        finally:
            cursor.close()

    @staticmethod
    def _fast_where(
        model: str | None,
        target: str | None,
        backend: str | None,
        exclude_targets: Collection[str],
    ) -> tuple[str, builtins.list[Any]]:
        """The sqlite3 WHERE clause of a listing: :func:`list_fast`'s filters, and the targets
        left out."""
        where, params = _fast_filters(model, target, backend)
        if exclude_targets:
            cond = f"a.target NOT IN ({', '.join('?' * len(exclude_targets))})"
            where = f"{where} AND {cond}" if where else f" WHERE {cond}"
            params = [*params, *exclude_targets]
        return where, builtins.list(params)

    @staticmethod
    def _list_where(
        model: str | None,
        target: str | None,
        backend: str | None,
        exclude_targets: Collection[str] = (),
    ) -> list[Any]:
        import sqlalchemy as sa

        from artifact_store import index

        t, u = index.artifacts, index.artifact_uses
        where = [t.c.backend == backend] if backend is not None else []
        if exclude_targets:
            where.append(t.c.target.not_in(builtins.list(exclude_targets)))
        if model is not None or target is not None:
            # IN (subquery), not a join: an artifact with several matching uses is listed once.
            pairs = ((u.c.model, model), (u.c.target, target))
            conds = [col == val for col, val in pairs if val is not None]
            where.append(t.c.key.in_(sa.select(u.c.key).where(*conds)))
        return where

    def gc_index(
        self, only: Iterable[str] | None = None
    ) -> tuple[builtins.list[GcRow], dict[str, builtins.list[tuple[str, int]]]]:
        """For gc: every artifact (or those in ``only``) as ``(key, manifest_digest,
        created_at, last_used_at)``, and the blobs each keeps alive as ``(digest, size)`` from
        ``artifact_blobs``. An artifact committed before migration 0004 has no entry in the
        second mapping: gc reads its manifest instead. Rows, not records: no metadata decoded.
        """
        if self._reader is not None:
            rows, refs = gc_index_fast(self._reader, None if only is None else builtins.list(only))
            return rows, self._with_own_refs(rows, refs)
        import sqlalchemy as sa

        from artifact_store import index

        t, ab = index.artifacts, index.artifact_blobs
        cols = (t.c.key, t.c.manifest_digest, t.c.created_at, t.c.last_used_at)
        keys = None if only is None else builtins.list(only)
        refs: dict[str, builtins.list[tuple[str, int]]] = {}
        rows: builtins.list[GcRow] = []
        with self._reads.connect() as conn:
            chunks = (
                [None] if keys is None else [keys[i : i + 900] for i in range(0, len(keys), 900)]
            )
            for chunk in chunks:
                q1, q2 = sa.select(*cols), sa.select(ab.c.key, ab.c.digest, ab.c.size)
                if chunk is not None:
                    q1, q2 = q1.where(t.c.key.in_(chunk)), q2.where(ab.c.key.in_(chunk))
                rows += [tuple(r) for r in conn.execute(q1)]  # type: ignore[misc]
                for key, digest, size in conn.execute(q2):
                    refs.setdefault(key, []).append((digest, size))
        return rows, self._with_own_refs(rows, refs)

    def _with_own_refs(
        self, rows: builtins.list[GcRow], refs: dict[str, builtins.list[tuple[str, int]]]
    ) -> dict[str, builtins.list[tuple[str, int]]]:
        """``refs`` plus the blobs of this store's own copies of those artifacts (a shared
        index names one output per key; this store keeps what it holds, see
        :mod:`artifact_store.local`). An artifact from before migration 0004 stays without
        refs, so that gc reads its manifest (through :meth:`get`, which gives this store's)."""
        own = self._own_refs([r[0] for r in rows])
        for key, blobs in own.items():
            if key in refs:
                refs[key] = sorted(set(refs[key]) | set(blobs))
        return refs

    def gc_live(self) -> tuple[set[str], dict[str, int], builtins.list[str]]:
        """For gc without eviction: every artifact key; every blob some artifact keeps
        alive, with its size (from ``artifact_blobs``); and the keys committed before
        migration 0004, whose blobs only their manifests know. Three plain queries."""
        if self._reader is not None:
            keys, sizes, legacy = gc_live_fast(self._reader)
        else:
            keys_sql, blobs_sql, legacy_sql = GC_LIVE_SQL
            with self._reads.connect() as conn:
                keys = set(conn.exec_driver_sql(keys_sql).scalars())
                sizes = {d: s for d, s in conn.exec_driver_sql(blobs_sql)}
                legacy = builtins.list(conn.exec_driver_sql(legacy_sql).scalars())
        # This store's own copies keep their blobs too, while their key is in the index.
        for key, blobs in self._own_refs().items():
            if key in keys:
                sizes.update(blobs)
        return keys, sizes, legacy

    def artifact_keys(self) -> set[str]:
        """Every artifact key (gc's re-check before its sweep)."""
        if self._reader is not None:
            return {r[0] for r in self._reader.execute("SELECT key FROM artifacts")}
        import sqlalchemy as sa

        from artifact_store import index

        with self._reads.connect() as conn:
            return set(conn.execute(sa.select(index.artifacts.c.key)).scalars())
