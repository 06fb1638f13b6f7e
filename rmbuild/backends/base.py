"""The backend plugin interface: every hook a backend may implement, declared once.

A backend is one accelerator stack (ONNX Runtime, OpenVINO, TensorRT, RBLN, a vendor's NPU...).
It is a subclass of :class:`BackendPlugin` registered in the ``rmbuild.backends`` entry-point
group, built-ins included; its package may also ship profiles, templates and toolchain files
(entry-point group ``rmbuild.resources``) and CLI commands (``rmbuild.commands``), see
``docs/plugins.md``. Vendor SDKs are imported inside methods, never at module import, so a
missing SDK shows up as "unavailable" instead of breaking ``rmbuild --help``.

Every hook has a default here, so a plugin overrides only what its stack needs, and rmbuild
calls the hooks directly (it never probes a plugin for optional methods). A public method of a
plugin that is not a hook but is spelt like one (``stage_flag``) is refused when the plugin is
loaded (:func:`rmbuild.plugins.misspelt_hooks`): it would otherwise be silently ignored. The
hooks, in the order a build and a run call them:

=============================== ===========================================================
``availability``                whether the runtime/SDK is installed here (never raises)
``probe``                       the devices of this kind on this machine
``check_stage``                 refuse a stage from its profile and flags, before any tool
``fingerprint``                 facts of the target hardware/compiler that enter the key
``stage_flags``                 flags derived from the stage's input (filled where null)
``compiler_cache_facts``        what keys the vendor compiler's cache beyond the compiler
``prepare_outputs``             sidecar files the runtime needs, after the tool succeeded
``artifact_details``            facts ``rmbuild show`` reads from the artifact's files
``check_compatible``            refuse (exit 6) an artifact this host cannot run
``grade``                       optimal / rebuild for an artifact that can run
``create_session``              load the artifact; a session that generates
=============================== ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from rmbuild.declare.spec import BuildProfile
    from rmbuild.runtime.session import BackendSession
    from rmbuild.toolrun.toolchains import Toolchain


def version_tuple(version: str) -> tuple[int, ...]:
    """ "1.32.0", "2026.4.1-22982-abc" (a C library's build number), "2.13.0+cpu" -> numbers,
    for the backends' version rules."""
    parts = []
    for piece in version.split("+")[0].split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class Resource:
    """A device this machine has."""

    type: str  # cpu | gpu | npu | pim
    name: str
    vendor: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Availability:
    """Whether a backend can be used here, and if not, why and what to install."""

    ok: bool
    reason: str = ""
    install: str = ""
    versions: dict[str, str] = field(default_factory=dict)


class BackendPlugin:
    """Base class of backends: subclasses set ``name`` (the entry point's name) and
    ``extra``, and override the hooks their stack needs; every hook's default is a no-op."""

    name: ClassVar[str] = ""
    extra: ClassVar[str] = ""
    description: ClassVar[str] = ""
    compiler_cache_keeps_versions: ClassVar[bool] = False
    """For profiles with ``compiler_cache``: a build that changed the cache stores it as a new
    version and keeps the one it was fed as an artifact of its own (a TensorRT timing cache
    stays valid when a later build adds tactics). False: the newest cache replaces the last."""

    def availability(self) -> Availability:
        """Is the runtime importable here? Must not raise; when not, say why and what
        installs it (``rmbuild backends`` prints both)."""
        return Availability(ok=True)

    def probe(self) -> list[Resource]:
        """Devices of this backend's kind found on this machine."""
        return []

    def required_build_profiles(self) -> list[str]:
        """Profiles whose artifacts this backend loads."""
        return []

    def get_capability(self) -> dict[str, Any]:
        """What the backend can do (dtypes, dynamic shapes, streaming...)."""
        return {}

    def check_stage(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain
    ) -> None:
        """Refuse a stage from its profile, flags and toolchain alone, before any tool of the
        target's chain runs (raise a :class:`~rmbuild.errors.SpecError`, exit 3): e.g.
        TensorRT 10 precision flags given to a TensorRT 11 toolchain. Called for every stage
        of a build, hits included, so it must be cheap and start no process."""

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        """Environment facts that key artifacts of ``profile`` built with ``flags``.

        Only facts that change the output belong here (device arch, NPU SKU, CPU ISA where the
        compiler bakes it in). Tool and SDK versions are keyed through the toolchain already;
        ``toolchain`` is the one the stage's tool will run from, to ask it what it targets.
        """
        return {}

    def stage_flags(
        self, profile: BuildProfile, flags: dict[str, Any], input_dir: Path
    ) -> dict[str, Any]:
        """Flags derived before the tool runs, from the stage's input or the host (TensorRT's
        shape profiles from the graph's inputs). Only flags the profile declares and the
        target left null are filled, so a value the user set always wins. They are a function
        of what is keyed already (the input, the flags, the fingerprint), so they stay out of
        the key; the argv recorded with the artifact shows them."""
        return {}

    def compiler_cache_facts(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain
    ) -> dict[str, Any]:
        """For profiles with ``compiler_cache``: what the vendor compiler's cache is keyed by
        beyond the compiler's identity (a TensorRT timing cache holds timings of one GPU, so
        it adds the compute capability). Asked once per build."""
        return {}

    def prepare_outputs(self, profile: BuildProfile, input_dir: Path, output_dir: Path) -> None:
        """Write sidecar files the runtime needs and the black-box tool does not leave.

        Runs after the tool succeeded, before the outputs are ingested; must be deterministic
        in the stage's (keyed) inputs.
        """

    def artifact_details(self, read: Callable[[str], bytes]) -> dict[str, Any]:
        """Facts ``rmbuild show`` prints from the artifact's own files (an RNGD ``.fxb``'s
        manifest, a TensorRT plan header); ``read(rel)`` gives a stored file's bytes. {}: none.
        Must not raise for an artifact of another profile of this backend."""
        return {}

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        """Raise IncompatibleArtifact (exit 6), saying why and what to do, if the artifact
        (its index metadata: flags, fingerprint, toolchain) cannot run here."""

    def grade(self, metadata: dict[str, Any]) -> tuple[str, str] | None:
        """How well an artifact that passed :meth:`check_compatible` fits this host.

        ``("optimal", why)`` or ``("rebuild", why)`` (it works, but a build made here would be
        better, e.g. it leaves CPU features or a newer runtime unused); None: no opinion, and
        ``rmbuild check`` applies its generic rules. From the metadata alone: never read blobs
        or start the runtime (ONNX Runtime's EP-context compatibility API is the model).
        """
        return None

    def create_session(
        self, artifact_dir: Path, metadata: dict[str, Any], options: dict[str, Any]
    ) -> BackendSession:
        """Load the materialized artifact and return a session that generates."""
        raise NotImplementedError(f"backend {self.name!r} cannot create sessions")


def hook_names() -> frozenset[str]:
    """Every public name of the interface: the hooks and the class attributes a plugin sets."""
    return frozenset(name for name in dir(BackendPlugin) if not name.startswith("_"))
