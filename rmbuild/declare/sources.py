"""What enters the store from outside: the model source and the files a stage carries.

One rule for every path read from outside the store: it is read *inside its
root*. A symlink whose target resolves inside the root is followed (a file is read as its
content, a folder is walked, with loop protection); one that resolves outside the root, that
dangles, or that loops is refused with an error naming the link and its target. For a source
this is a :class:`~rmbuild.errors.ModelSourceError` (exit 3) pointing at ``source.path`` in
model.yaml, raised while the source digest is computed, i.e. before any tool runs: for a
``format: hf`` source the tool reads the source folder itself, so the walk that hashes the
source is also the one that vets every path the tool can be handed.

The same check is applied again when files are carried into an artifact (a backstop for an
input that is not the source, e.g. an upstream artifact). Tool outputs are vetted by
``artifact_store`` itself (``Store.put_tree``), which already refuses escaping links.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from rmbuild.errors import ModelSourceError
from rmbuild.keys import tree_digest
from rmbuild.yamlio import line_of

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.declare.spec import LoadedSpec

# A folder tree deeper than this, or with more entries, is refused rather than walked: links
# inside the root can fan out (a/l1 -> b, a/l2 -> b, b/l1 -> c, ...) into exponentially many
# paths without ever forming a loop.
MAX_DEPTH = 64
MAX_ENTRIES = 1_000_000


class UnsafePath(Exception):
    """A path under a root that must not be read: a link leaving the root, dangling or looping.

    Raised by :func:`walk` and :func:`check_inside`; callers turn it into the typed error of
    their context (a :class:`ModelSourceError` for a source).
    """

    def __init__(self, path: Path, target: str | None, why: str) -> None:
        self.path = path
        self.target = target
        self.why = why
        super().__init__(self.describe())

    def describe(self) -> str:
        """'symlink X -> Y leaves the source folder' and the like."""
        if self.target is None:
            return f"{str(self.path)!r} {self.why}"
        return f"symlink {str(self.path)!r} -> {self.target!r} {self.why}"


def containment_root(root: Path) -> Path:
    """The folder links under ``root`` may resolve into: ``root`` itself (resolved).

    One exception, a layout and not a loophole: a Hugging Face hub snapshot
    (``models--org--name/snapshots/<rev>/``) is made of links to ``../../blobs/<sha>``, so its
    root is the repo folder ``models--org--name``, which holds both. A link to another repo's
    blobs, or anywhere else, still leaves it.
    """
    real = Path(os.path.realpath(root))
    repo = real.parent.parent
    if real.parent.name == "snapshots" and (repo / "blobs").is_dir():
        return repo
    return real


def _hidden(name: str) -> bool:
    # Hidden files and caches are not part of a model (.DS_Store, .cache/ from hub tools).
    return name.startswith(".") or name == "__pycache__"


def _follow(path: Path, bound: Path, shown: Path | None = None) -> tuple[os.stat_result, Path]:
    """``stat`` through the symlink ``path``; refuse it if it dangles, loops or leaves ``bound``.

    ``shown`` is the name the error gives the link (default ``path``).
    """
    shown = shown or path
    try:
        target = os.readlink(path)
    except OSError:
        target = None
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(shown, target, "is a symlink loop") from None
        raise UnsafePath(shown, target, "is dangling: its target does not exist") from None
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(bound):
        raise UnsafePath(shown, str(real), f"leaves the source folder {str(bound)!r}")
    return st, real


def walk(root: Path, *, bound: Path | None = None) -> dict[str, Path]:
    """Every regular file under ``root`` that belongs to the model, by POSIX relpath.

    Symlinks inside ``bound`` (default :func:`containment_root` of ``root``) are followed, a
    linked folder is walked under the link's name (the tool sees its files there). Every entry
    is vetted, hidden ones too (a carry pattern or a tool may read them), but hidden files and
    caches are not listed. Raises :class:`UnsafePath`.
    """
    bound = bound or containment_root(root)
    real_root = Path(os.path.realpath(root))
    files: dict[str, Path] = {}
    seen = 0

    def visit(folder: Path, rel: PurePosixPath, ancestors: tuple[Path, ...], hidden: bool) -> None:
        # ``folder`` is the path as the user sees it (errors name it); ``ancestors[-1]`` is
        # its real path, through which it is read, so a deep walk never piles up links in a
        # path (the kernel gives up after 40, with the same ELOOP as a loop).
        nonlocal seen
        if len(ancestors) > MAX_DEPTH:
            raise UnsafePath(folder, None, f"is more than {MAX_DEPTH} folders deep")
        here = ancestors[-1]
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise UnsafePath(folder, None, f"cannot be read ({exc.strerror})") from None
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                raise UnsafePath(root, None, f"holds more than {MAX_ENTRIES} entries")
            path = here / entry.name
            sub = rel / entry.name
            skip = hidden or _hidden(entry.name)
            if entry.is_symlink():
                st, real = _follow(path, bound, shown=folder / entry.name)
                mode = st.st_mode
            else:
                mode = entry.stat(follow_symlinks=False).st_mode
                real = path
            if stat.S_ISDIR(mode):
                if real in ancestors:
                    raise UnsafePath(
                        folder / entry.name,
                        str(real),
                        "is a symlink loop: it points at a folder above it",
                    )
                visit(folder / entry.name, sub, (*ancestors, real), skip)
            elif stat.S_ISREG(mode) and not skip:
                files[sub.as_posix()] = path
            # Sockets, FIFOs and devices inside the root are not model files: not listed.

    visit(Path(root), PurePosixPath(), (real_root,), False)
    return files


def check_inside(path: Path, root: Path, bound: Path | None = None) -> None:
    """Refuse ``path`` (under ``root``) if it, or a linked folder on its way, leaves the root."""
    bound = bound or containment_root(root)
    if os.path.islink(path) or not Path(os.path.realpath(path)).is_relative_to(bound):
        _follow(path, bound)  # raises for a link that dangles, loops or leaves
        return
    if not os.path.exists(path):
        raise UnsafePath(path, None, "does not exist")


# ----------------------------------------------------------------------------- the source


def _where(spec: LoadedSpec, field: str | None = None) -> dict[str, Any]:
    field = field or ("hub" if getattr(spec.spec.source, "hub", None) else "path")
    return {
        "file": spec.path,
        "line": line_of(spec.lines, ("source", field)) or line_of(spec.lines, ("source",)),
        "field": f"source.{field}",
    }


def source_path(spec: LoadedSpec) -> Path:
    """The model folder ``spec`` builds from: its ``source.path``, or a hub source's snapshot
    folder in the hub's cache (:func:`hub_snapshot`; building resolves, and refuses or fetches,
    it before any tool reads it)."""
    if spec.bundle_source is not None:
        return spec.bundle_source
    if spec.spec.source.hub is not None:
        return hub_snapshot(spec, download=False, check_pinned=False).folder
    return (spec.root / str(spec.spec.source.path)).resolve()


def source_files(spec: LoadedSpec) -> dict[str, Path]:
    """The model source's files by relpath; refuses a source that is missing, empty or unsafe.

    A hub source (``source: {hub: org/name, revision: SHA}``) is first resolved in the hub's
    cache (see :func:`hub_snapshot`), fetched there where it is missing and a network is allowed.
    """
    # A spec laid out from a Ray bundle (bundle_source) holds the files the driver resolved.
    if getattr(spec.spec.source, "hub", None) and spec.bundle_source is None:
        hub_snapshot(spec)  # refuses a moving ref; downloads what the cache lacks
    src = source_path(spec)
    where = _where(spec)
    if src.is_file():
        raise ModelSourceError(
            f"model source {str(src)!r} is a file; give the folder that holds the model",
            hint="an HF folder, or for format: onnx a folder with model.onnx (and its external "
            "data), config.json and the tokenizer files",
            **where,
        )
    if not src.is_dir():
        raise ModelSourceError(
            f"model source {str(src)!r} does not exist",
            hint="paths in model.yaml are relative to the model.yaml file",
            **where,
        )
    try:
        files = walk(src)
    except UnsafePath as exc:
        raise ModelSourceError(
            f"model source: {exc.describe()}",
            hint="a model folder may link only to files inside it; copy the file in "
            "(e.g. `cp -L`) or point source.path at a folder that holds it",
            **where,
        ) from None
    if not files:
        raise ModelSourceError(f"model source {str(src)!r} is empty", **where)
    if spec.spec.source.format == "onnx" and "model.onnx" not in files:
        raise ModelSourceError(f"format is onnx but {str(src)!r} has no model.onnx", **where)
    return files


def source_file_digests(spec: LoadedSpec, store: Store) -> dict[str, str]:
    """Each source file's SHA-256 by relpath: stat-cached, and for a hub source's LFS files
    the digest the hub's cache already names its blob by (no gigabytes read again)."""
    files = source_files(spec)
    known = {rel: d for rel, path in files.items() if (d := lfs_digest(path)) is not None}
    rest = [path for rel, path in files.items() if rel not in known]
    hashed = store.hash_files(rest) if rest else {}
    return {rel: known.get(rel) or hashed[path] for rel, path in files.items()}


def source_digest(spec: LoadedSpec, store: Store) -> str:
    """Content digest of the model source (see :func:`source_file_digests`). Content only: a
    hub snapshot holding the same files as a folder has the same digest, so the same key."""
    return tree_digest(source_file_digests(spec, store))


# ----------------------------------------------------------------------------- carry


def carry(patterns: list[str], source: Path, out: Path) -> None:
    """Copy the files matching ``patterns`` from the stage's input ``source`` into ``out``.

    A file the tool already wrote wins. A match that is a link leaving ``source`` (or
    dangling, or looping) is refused with exit 3 (a tokenizer file linked to
    /etc/shadow must not become a world-readable blob). Files are written without following
    links under ``out``: a link the tool left there is not written through; the store's
    output walker refuses it as the tool's fault.
    """
    if not source.is_dir():
        return
    bound = containment_root(source)
    real_out = Path(os.path.realpath(out))
    for pattern in patterns:
        for path in sorted(source.glob(pattern)):
            try:
                check_inside(path, source, bound)
            except UnsafePath as exc:
                raise ModelSourceError(
                    f"cannot carry {pattern!r} into the artifact: {exc.describe()}",
                    file=str(source),
                    hint="a model folder may link only to files inside it; copy the file in",
                ) from None
            if not path.is_file():
                continue
            target = out / path.relative_to(source)
            if os.path.lexists(target):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not Path(os.path.realpath(target.parent)).is_relative_to(real_out):
                continue  # a linked folder the tool left; put_tree refuses it (exit 4)
            _copy_nofollow(path, target)


def _copy_nofollow(src: Path, dst: Path) -> None:
    # O_EXCL|O_NOFOLLOW: never write through a (dangling) link the tool left at ``dst``.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(dst, flags, 0o644)
    with open(src, "rb") as reader, os.fdopen(fd, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)


# ----------------------------------------------------------------------------- hub sources

# A commit of a hub repo: 40 hex digits. Anything else (main, v1.0, refs/pr/1) moves.
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
ALLOW_UNPINNED_ENV = "RMBUILD_ALLOW_UNPINNED"
HUB_URL = "https://huggingface.co"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_cache_dir() -> Path:
    """The hub's cache, by huggingface_hub's own rule, read from the environment now:
    ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``."""
    if env := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE``, as huggingface_hub reads it: the cache only, never the network."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE"))


def unpinned(spec: LoadedSpec) -> bool:
    """Is ``spec``'s source a hub repo at a revision that is not a commit (a moving ref)?"""
    source = spec.spec.source
    if not getattr(source, "hub", None):
        return False
    return not COMMIT_RE.fullmatch(source.revision or "main")


def allow_unpinned() -> bool:
    """``compile --allow-unpinned`` (which sets ``RMBUILD_ALLOW_UNPINNED=1`` for every process
    of the build)."""
    return _truthy(os.environ.get(ALLOW_UNPINNED_ENV))


def lfs_digest(path: Path) -> str | None:
    """The SHA-256 a hub cache names an LFS file's blob by (``blobs/<sha256>``, the LFS oid,
    which is the content's SHA-256), or None for anything else (a git file's blob is named by
    its git SHA-1: 40 digits, hashed like any file)."""
    if not os.path.islink(path):
        return None
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
        return real.name
    return None


@dataclass(frozen=True)
class HubSnapshot:
    """A hub repo at one commit, in the local cache."""

    repo: str
    revision: str  # as model.yaml asks for it
    commit: str  # the commit it is (== revision when pinned); "" where not resolved yet
    folder: Path  # models--org--name/snapshots/<commit>

    @property
    def pinned(self) -> bool:
        return bool(COMMIT_RE.fullmatch(self.revision))

    def dependency(self) -> dict[str, Any]:
        """The repo at its commit, as a SLSA resolved dependency."""
        return {
            "name": f"hub:{self.repo}",
            "uri": f"{HUB_URL}/{self.repo}",
            "digest": {"gitCommit": self.commit},
            "annotations": {"revision": self.revision, "pinned": self.pinned},
        }

    def file_uri(self, rel: str) -> str:
        return f"{HUB_URL}/{self.repo}/resolve/{self.commit}/{rel}"


def hub_repo_folder(repo: str) -> Path:
    """``models--org--name`` in the cache (huggingface_hub's ``repo_folder_name``)."""
    return hub_cache_dir() / ("models--" + repo.replace("/", "--"))


def hub_snapshot(
    spec: LoadedSpec, *, download: bool = True, check_pinned: bool = True
) -> HubSnapshot:
    """Resolve a hub source in the cache's own layout: ``refs/<branch>`` names a commit,
    ``snapshots/<commit>/`` holds links into ``blobs/``.

    A revision that is not a commit SHA is refused (exit 3, naming model.yaml's line and
    ``source.revision``) unless unpinned builds are allowed: a build from a moving ref cannot
    be reproduced. A snapshot the cache lacks is fetched with ``huggingface_hub``'s
    ``snapshot_download`` (the network, and ``HF_TOKEN`` for a gated repo), unless
    ``HF_HUB_OFFLINE`` is set: then it is exit 3, saying what to download where.
    ``download=False`` resolves without fetching or refusing (the folder may not exist yet).
    """
    from rmbuild.errors import SpecError

    source = spec.spec.source
    repo = str(source.hub)
    revision = source.revision or "main"
    if check_pinned and not COMMIT_RE.fullmatch(revision) and not allow_unpinned():
        raise SpecError(
            f"revision {revision!r} of hub source {repo!r} is not a commit: a build from a "
            "moving ref (a branch or tag) cannot be reproduced",
            hint="pin the commit, e.g. `revision: <40-hex sha>` (the cache's refs/"
            f"{revision} names the one it has now), or build anyway with "
            "`rmbuild compile ... --allow-unpinned`",
            **_where(spec, "revision" if source.revision else "hub"),
        )
    repo_folder = hub_repo_folder(repo)
    commit = revision if COMMIT_RE.fullmatch(revision) else _read_ref(repo_folder, revision)
    folder = repo_folder / "snapshots" / (commit or revision)
    if folder.is_dir() or not download:
        return HubSnapshot(repo, revision, commit or "", folder)
    if hub_offline():
        raise ModelSourceError(
            f"hub source {repo!r} at {revision!r} is not in the hub cache {str(hub_cache_dir())!r}"
            " and HF_HUB_OFFLINE is set",
            hint=f"download it where there is a network (`hf download {repo} --revision "
            f"{revision}`) into that cache (HF_HUB_CACHE / HF_HOME), or unset HF_HUB_OFFLINE",
            **_where(spec),
        )
    fetched = _download(spec, repo, revision)
    return HubSnapshot(repo, revision, fetched.name, fetched)


def _read_ref(repo_folder: Path, revision: str) -> str | None:
    try:
        text = (repo_folder / "refs" / revision).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return text if COMMIT_RE.fullmatch(text) else None


def _download(spec: LoadedSpec, repo: str, revision: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelSourceError(
            f"hub source {repo!r} is not in the hub cache, and huggingface_hub is not "
            "installed to fetch it",
            hint="pip install 'rmbuild[onnx]' (it brings huggingface_hub), or download the "
            "repo into the cache where it is installed",
            **_where(spec),
        ) from None
    try:
        path = snapshot_download(repo_id=repo, revision=revision, cache_dir=hub_cache_dir())
    except Exception as exc:  # noqa: BLE001 - the hub client raises HTTP, auth and OS errors
        raise ModelSourceError(
            f"cannot fetch hub source {repo!r} at {revision!r}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            hint="check the repo id and revision, the network, and HF_TOKEN for a gated repo",
            **_where(spec),
        ) from None
    return Path(path)
