"""Directory trees in and out of the store: walking an input tree, laying out an artifact.

A tree is laid out as read-only hardlinks to its blobs (copies where a link cannot be made,
and for executables, whose mode a shared blob inode cannot carry), built in a sibling temp dir
and renamed into place, so readers see all of it or nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from artifact_store.errors import CorruptManifest, CorruptObject, UnsafeTree
from artifact_store.records import FileEntry, Manifest

# Hardlinking fails across filesystems, on files we don't own (protected_hardlinks), past the
# link limit, or where links are unsupported; all of these fall back to a copy.
_NO_LINK_ERRNOS = (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP)


def walk_tree(top: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(posix relpath, real path)`` for every file under ``top``, symlinks followed.

    Raises :class:`UnsafeTree` for symlinks leaving ``top``, symlink cycles, dangling links
    and special files.
    """
    real_top = os.path.realpath(top)
    stack: list[tuple[str, str, frozenset[str]]] = [(str(top), "", frozenset({real_top}))]
    while stack:
        dirpath, prefix, ancestors = stack.pop()
        with os.scandir(dirpath) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = prefix + e.name
            real = os.path.realpath(e.path)
            if e.is_symlink() and os.path.commonpath([real, real_top]) != real_top:
                raise UnsafeTree(str(top), rel, f"is a symlink pointing outside it, to {real}")
            if e.is_dir():
                if real in ancestors:
                    raise UnsafeTree(str(top), rel, "is a symlink that makes a cycle")
                stack.append((e.path, rel + "/", ancestors | {real}))
            elif e.is_file():
                yield rel, real
            elif e.is_symlink():
                raise UnsafeTree(str(top), rel, "is a dangling symlink")
            else:
                raise UnsafeTree(str(top), rel, "is not a regular file or directory")


def tree_complete(out: Path, manifest: Manifest, blob_path: Callable[[str], Path]) -> bool:
    """Is ``out`` a complete layout of ``manifest``?

    A file linked to its blob must still be that blob's inode: a blob replaced by a rebuild
    or moved to quarantine leaves the old inode in the tree, which must be
    laid out again rather than served.
    """
    if out.is_symlink() or not out.is_dir():
        return False
    for rel, entry in manifest.files.items():
        try:
            st = os.lstat(out / rel)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
        if st.st_nlink > 1:  # a hardlink: to the blob, or to a blob no longer there
            try:
                bst = os.stat(blob_path(entry.digest))
            except OSError:
                return False
            if (bst.st_ino, bst.st_dev) != (st.st_ino, st.st_dev):
                return False
    return True


def lay_out(manifest: Manifest, out: Path, blob_path: Callable[[str], Path]) -> None:
    """Build ``out`` from ``manifest``'s blobs in a sibling temp dir, then rename it in place.

    ``out`` must not exist. Losing a race to a concurrent caller laying out the same tree is
    fine: theirs is as good as ours.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for rel, entry in manifest.files.items():
            target = tmp / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _place(blob_path(entry.digest), entry, target)
            except (FileExistsError, NotADirectoryError):
                raise CorruptManifest(
                    manifest.digest, f"path {rel!r} clashes with another"
                ) from None
        os.chmod(tmp, 0o755)  # mkdtemp makes 0o700
        try:
            os.rename(tmp, out)
        except OSError as e:
            lost_race = e.errno in (errno.EEXIST, errno.ENOTEMPTY)
            if not lost_race or not tree_complete(out, manifest, blob_path):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _place(src: Path, entry: FileEntry, target: Path) -> None:
    if not src.exists():
        raise CorruptObject(entry.digest, f"missing (needed for {target.name})")
    if not entry.executable:
        try:
            os.link(src, target)
            return
        except OSError as e:
            if e.errno not in _NO_LINK_ERRNOS:
                raise
    shutil.copyfile(src, target)
    os.chmod(target, 0o555 if entry.executable else 0o444)


def remove_aside(path: Path) -> None:
    """Remove a tree, renaming it first so a reader never sees it half-deleted."""
    aside = path.with_name(f".{path.name}.stale-{os.getpid()}-{id(path):x}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)
