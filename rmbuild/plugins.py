"""Plugin discovery: backends (``rmbuild.backends``) and CLI commands (``rmbuild.commands``).

Built-in backends register in ``pyproject.toml`` the same way third-party ones do. A plugin that
fails to import is listed as unavailable with its error; two plugins claiming one name is an
error naming both. A plugin class whose public method is not a hook of
:class:`~rmbuild.backends.base.BackendPlugin` but is spelt like one (``stage_flag`` for
``stage_flags``) fails to load, naming both: rmbuild calls only the declared hooks, so the
misspelt one would be silently ignored and the build would go on without it (a refusal not
made, a key missing a fact). It is an error rather than a warning because a warning scrolls
past in a CI log while the artifacts it produces are wrong. A public helper method whose name is
nowhere near a hook is allowed here (the contract kit, :mod:`rmbuild.testing`, is stricter).

Profiles, templates and toolchain files shipped by plugin packages (``rmbuild.resources``) are
found by :mod:`rmbuild.config`, which imports no plugin code.
"""

from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Availability, BackendPlugin, hook_names
from rmbuild.errors import EXIT_UNAVAILABLE, BackendUnavailable, PluginConflict, RmbuildError

if TYPE_CHECKING:
    import click

GROUP = "rmbuild.backends"
COMMANDS_GROUP = "rmbuild.commands"


class DuplicateBackend(RmbuildError):
    """Two installed packages register one backend name: an installation conflict for the
    user to resolve (exit 7, like any backend that cannot be used here), not a bug."""

    code = "duplicate-backend"
    exit_code = EXIT_UNAVAILABLE


def _group(group: str) -> list[EntryPoint]:
    # Filtered again by group: a stand-in for entry_points in a test may ignore the argument.
    return [ep for ep in entry_points(group=group) if getattr(ep, "group", group) == group]


def package_of(ep: EntryPoint) -> str:
    """The distribution that registers ``ep`` (its name as installed)."""
    dist = getattr(ep, "dist", None)  # None for an entry point made by hand (tests)
    return dist.metadata["Name"] if dist is not None else re.split(r"[.:]", ep.value)[0].strip()


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend: its plugin if it loaded, or the import error if not."""

    name: str
    target: str
    plugin: BackendPlugin | None
    error: str = ""
    package: str = ""

    def availability(self) -> Availability:
        if self.plugin is None:
            return Availability(ok=False, reason=f"plugin failed to load: {self.error}")
        try:
            return self.plugin.availability()
        except Exception as exc:  # a broken plugin must not break `rmbuild backends`
            return Availability(ok=False, reason=f"availability check failed: {exc}")


def misspelt_hooks(cls: type) -> list[tuple[str, str]]:
    """(name, hook) for each public attribute ``cls`` defines that is not a hook of
    BackendPlugin but is spelt like one (difflib ratio >= 0.8: ``stage_flag``,
    ``check_compatibile``, ``fingerprints``)."""
    hooks = sorted(hook_names())
    found = []
    for name in _own_public_names(cls):
        if name in hooks:
            continue
        close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.8)
        if close:
            found.append((name, close[0]))
    return found


def _own_public_names(cls: type) -> list[str]:
    """Public names defined by ``cls`` and its bases below BackendPlugin."""
    names: list[str] = []
    for klass in inspect.getmro(cls):
        if klass is BackendPlugin or klass is object:
            continue
        names += [n for n in vars(klass) if not n.startswith("_") and n not in names]
    return names


def _load(ep: EntryPoint) -> BackendEntry:
    package = package_of(ep)
    try:
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, BackendPlugin)):
            raise TypeError(f"{ep.value} is not a BackendPlugin")
        if wrong := misspelt_hooks(cls):
            raise TypeError(
                "; ".join(
                    f"{cls.__name__}.{name} is not a hook of BackendPlugin (did you mean "
                    f"{hook!r}? a misspelt hook would never be called)"
                    for name, hook in wrong
                )
            )
        plugin = cls()
        return BackendEntry(ep.name, ep.value, plugin, package=package)
    except Exception as exc:
        return BackendEntry(ep.name, ep.value, None, f"{type(exc).__name__}: {exc}", package)


@cache
def registry() -> dict[str, BackendEntry]:
    """Every registered backend by name."""
    found: dict[str, BackendEntry] = {}
    for ep in _group(GROUP):
        if ep.name in found and found[ep.name].target != ep.value:
            raise DuplicateBackend(
                f"two plugins register the backend {ep.name!r}: "
                f"{found[ep.name].target} ({found[ep.name].package}) and {ep.value} "
                f"({package_of(ep)})",
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


@dataclass(frozen=True)
class CommandEntry:
    """A CLI command a plugin package adds (``rmbuild.commands``), loaded on first use."""

    name: str
    target: str
    package: str
    ep: Any

    def load(self) -> click.Command:
        """The command object; a broken one is BackendUnavailable (exit 7) saying why."""
        import click

        try:
            command = self.ep.load()
        except Exception as exc:
            raise BackendUnavailable(
                f"command {self.name!r} of package {self.package} failed to load: "
                f"{type(exc).__name__}: {exc}",
                hint=f"reinstall {self.package}, or uninstall it",
            ) from exc
        if not isinstance(command, click.Command):
            raise BackendUnavailable(
                f"command {self.name!r} of package {self.package} ({self.target}) is not a "
                "click command",
                hint=f"ask the vendor of {self.package} to register a click.Command",
            )
        return command


@cache
def plugin_commands(builtin: frozenset[str] = frozenset()) -> dict[str, CommandEntry]:
    """The commands of ``rmbuild.commands`` by name, none of them importing anything yet.

    A name rmbuild itself uses (``builtin``) or two packages register is a PluginConflict
    (exit 7) naming both: a plugin never replaces ``compile`` or another plugin's command.
    """
    found: dict[str, CommandEntry] = {}
    for ep in _group(COMMANDS_GROUP):
        entry = CommandEntry(ep.name, ep.value, package_of(ep), ep)
        if ep.name in builtin:
            raise PluginConflict(
                f"package {entry.package} registers the command {ep.name!r}, which is "
                "rmbuild's own",
                hint=f"uninstall {entry.package}, or ask its vendor to rename the command",
            )
        if ep.name in found and found[ep.name].target != ep.value:
            raise PluginConflict(
                f"two installed packages register the command {ep.name!r}: "
                f"{found[ep.name].package} and {entry.package}",
                hint="uninstall one of the two packages",
            )
        found[ep.name] = entry
    return found
