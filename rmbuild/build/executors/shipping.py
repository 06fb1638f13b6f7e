"""What a Ray task builds from, sent by value rather than by a path on the driver's disk.

Always: the model.yaml's bytes as the driver read them. A task on the driver's own machine
(a one-node cluster there) reads the project and the model source where they are, after
checking that the model.yaml still holds those bytes. A task on another machine cannot: the
driver's paths do not exist there, or hold something else. For such a cluster the driver packs
the project into a **bundle** and sends it through the remote cache, content-addressed like any
artifact (an entry whose target is ``ray-bundle``; a rerun uploads only what changed):

* ``project/``: the model.yaml's bytes, and the project's ``profiles/`` (toolchain files
  included) and ``templates/``, the ones the driver's build would use; user-level folders
  (``~/.config/rmbuild``, ``$RMBUILD_PROFILES_PATH``) and the toolchains themselves are each
  node's own, as the built-in profiles are;
* ``source/``: the model source's files (the same vetted walk that hashes it for the key).

A task pulls the bundle (every file hashed on arrival), lays it out in a scratch folder and
builds from it. Keys hold content, never paths, so a node computes the driver's keys.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rmbuild.declare.spec import LoadedSpec, load_model_spec
from rmbuild.errors import SpecError, UsageError

if TYPE_CHECKING:
    from artifact_store.remote import Remote

BUNDLE_TARGET = "ray-bundle"
BUNDLE_BACKEND = "bundle"


@dataclass(frozen=True)
class ShippedSpec:
    """A model.yaml sent to a task: its bytes, the driver's path of it (for messages and the
    artifact's record), and the key of its project bundle on the remote when the task cannot
    read the driver's disk."""

    data: bytes
    path: str
    bundle: str | None = None


class BundledSpec(LoadedSpec):
    """A model.yaml laid out from a bundle on this node. ``path`` stays the driver's (what
    messages and the artifact's record name); profiles, templates and the source are the
    bundle's copies."""

    bundle_root: Path
    bundle_source: Path

    @property
    def root(self) -> Path:
        return self.bundle_root


def ship(spec: LoadedSpec, remote: Remote | None) -> ShippedSpec:
    """The model.yaml by value; with ``remote``, its project bundle pushed there too."""
    data = spec.path.read_bytes()
    if remote is None:
        return ShippedSpec(data, str(spec.path))
    return ShippedSpec(data, str(spec.path), push_bundle(spec, data, remote))


def push_bundle(spec: LoadedSpec, data: bytes, remote: Remote) -> str:
    """Pack ``spec``'s project and source (see the module docstring), push it; its key."""
    from artifact_store import Store
    from rmbuild.config import project_dir
    from rmbuild.declare.sources import source_files
    from rmbuild.storage import remotes

    with tempfile.TemporaryDirectory(prefix="rmbuild-ship-") as tmp:
        top = Path(tmp) / "bundle"
        project = top / "project"
        project.mkdir(parents=True)
        (project / spec.path.name).write_bytes(data)
        # Stops the upward profile search at the bundle, as a repository root does.
        (project / ".git").write_bytes(b"")
        for kind in ("profiles", "templates"):
            found = project_dir(kind, spec.root)
            if found is not None:
                shutil.copytree(found, project / kind)
        for rel, path in source_files(spec).items():
            dest = top / "source" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        # A throwaway store: the bundle goes to the remote, never into the user's store.
        with Store(Path(tmp) / "store") as scratch:
            manifest = scratch.put_tree(top, move=True)
            key = hashlib.sha256(f"rmbuild ray bundle\n{manifest.digest}".encode()).hexdigest()
            scratch.commit(
                key,
                manifest,
                model=spec.spec.name,
                target=BUNDLE_TARGET,
                backend=BUNDLE_BACKEND,
                metadata={"spec": spec.path.name, "spec_file": str(spec.path)},
            )
            remotes.call(remote.push, scratch, [key], parents=False)
    return key


def load(shipped: ShippedSpec, workdir: Path, remote: Remote | None) -> LoadedSpec:
    """The spec a task builds: the driver's file if this node shares its disk, else the
    bundle laid out under ``workdir`` (which must outlive the build)."""
    if shipped.bundle is None:
        path = Path(shipped.path)
        try:
            now = path.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"{path} cannot be read on this Ray node ({exc.strerror or exc}): the task "
                "runs on a machine that does not share the driver's disk",
                hint="give --remote URL: the driver then sends the project through it",
            ) from None
        if now != shipped.data:
            raise SpecError(
                f"{path} changed after `rmbuild compile` read it: this task would build "
                "something other than what was planned",
                file=path,
                hint="run the compile again",
            )
        return load_model_spec(path)
    if remote is None:  # a driver bug: a bundle is only made with a remote
        raise UsageError("a shipped project bundle needs the remote it was pushed to")
    from artifact_store import Store
    from rmbuild.storage import remotes

    with Store(workdir / "store") as scratch:
        remotes.call(remote.pull, scratch, shipped.bundle)
        tree = scratch.materialize(shipped.bundle, workdir / "bundle")
    name = Path(shipped.path).name
    laid_out = load_model_spec(tree / "project" / name)
    # The driver's path is what messages and the record name, unless this node has a file
    # there with other bytes: the plan cache keys on that path and must not mix the two.
    shown = Path(shipped.path)
    try:
        same = shown.read_bytes() == shipped.data
    except OSError:
        same = True  # nothing there: nothing to mix up
    return BundledSpec(
        spec=laid_out.spec,
        path=shown if same else laid_out.path,
        lines=laid_out.lines,
        bundle_root=tree / "project",
        bundle_source=tree / "source",
    )
