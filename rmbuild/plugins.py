"""Backend discovery through the ``rmbuild.backends`` entry-point group.

Built-in backends register in ``pyproject.toml`` the same way third-party ones do. A plugin that
fails to import is listed as unavailable with its error; two plugins claiming one name is an
error naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from rmbuild.backends.base import Availability, BackendPlugin
from rmbuild.errors import EXIT_UNAVAILABLE, BackendUnavailable, RmbuildError

GROUP = "rmbuild.backends"


class DuplicateBackend(RmbuildError):
    """Two installed packages register one backend name: an installation conflict for the
    user to resolve (exit 7, like any backend that cannot be used here), not a bug."""

    code = "duplicate-backend"
    exit_code = EXIT_UNAVAILABLE


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend: its plugin if it loaded, or the import error if not."""

    name: str
    target: str
    plugin: BackendPlugin | None
    error: str = ""

    def availability(self) -> Availability:
        if self.plugin is None:
            return Availability(ok=False, reason=f"plugin failed to load: {self.error}")
        try:
            return self.plugin.availability()
        except Exception as exc:  # a broken plugin must not break `rmbuild backends`
            return Availability(ok=False, reason=f"availability check failed: {exc}")


def _load(ep: EntryPoint) -> BackendEntry:
    try:
        cls = ep.load()
        plugin = cls()
        if not isinstance(plugin, BackendPlugin):
            raise TypeError(f"{ep.value} is not a BackendPlugin")
        return BackendEntry(ep.name, ep.value, plugin)
    except Exception as exc:
        return BackendEntry(ep.name, ep.value, None, f"{type(exc).__name__}: {exc}")


@cache
def registry() -> dict[str, BackendEntry]:
    """Every registered backend by name."""
    found: dict[str, BackendEntry] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].target != ep.value:
            raise DuplicateBackend(
                f"two plugins register the backend {ep.name!r}: "
                f"{found[ep.name].target} and {ep.value}",
                hint="uninstall one of the packages providing them",
            )
        found[ep.name] = _load(ep)
    return found


def get_backend(name: str) -> BackendPlugin:
    """The plugin for ``name``, or BackendUnavailable saying why."""
    entry = registry().get(name)
    if entry is None:
        raise BackendUnavailable(
            f"no backend named {name!r} is installed",
            context=[f"installed backends: {', '.join(sorted(registry())) or 'none'}"],
        )
    if entry.plugin is None:
        raise BackendUnavailable(f"backend {name!r} failed to load: {entry.error}")
    return entry.plugin


def require_available(name: str) -> BackendPlugin:
    plugin = get_backend(name)
    avail = plugin.availability()
    if not avail.ok:
        raise BackendUnavailable(
            f"backend {name!r} is not available here: {avail.reason}",
            hint=avail.install or None,
        )
    return plugin
