"""The backend plugin interface.

A backend is one accelerator stack (ONNX Runtime, OpenVINO, TensorRT, RBLN, ...). Each lives in
``rmbuild/backends/<name>/`` with the same files (``plugin.py``, ``runtime.py``, ``probe.py``)
and registers through the ``rmbuild.backends`` entry-point group, built-ins included. Vendor SDKs
are imported inside methods, never at module import, so a missing SDK shows up as "unavailable"
instead of breaking ``rmbuild --help``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from rmbuild.runtime.session import BackendSession
    from rmbuild.spec import BuildProfile
    from rmbuild.toolchains import Toolchain


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
    """Base class of backends. Subclasses set ``name`` and ``extra`` and override the hooks."""

    name: ClassVar[str] = ""
    extra: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def availability(self) -> Availability:
        """Is the runtime importable here? Must not raise."""
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

    def fingerprint(
        self, profile: BuildProfile, flags: dict[str, Any], toolchain: Toolchain | None = None
    ) -> dict[str, Any]:
        """Environment facts that key artifacts of ``profile`` built with ``flags``.

        Only facts that change the output belong here (device arch, NPU SKU, CPU ISA where the
        compiler bakes it in). Tool and SDK versions are keyed through the toolchain already;
        ``toolchain`` is the one the stage's tool will run from, to ask it what it targets.
        """
        return {}

    def prepare_outputs(self, profile: BuildProfile, input_dir: Path, output_dir: Path) -> None:
        """Write sidecar files the runtime needs and the black-box tool does not leave.

        Runs after the tool succeeded, before the outputs are ingested; must be deterministic
        in the stage's (keyed) inputs.
        """

    def check_compatible(self, metadata: dict[str, Any]) -> None:
        """Raise IncompatibleArtifact, saying why, if the artifact cannot run here."""

    def grade(self, metadata: dict[str, Any]) -> tuple[str, str] | None:
        """How well an artifact that passed :meth:`check_compatible` fits this host (issue 9).

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
