"""Building: one stage (:mod:`.running`), a target's chain (:mod:`.walk`, :mod:`.target`), many
targets (:mod:`.batch`, :mod:`.executors`) and compiler caches (:mod:`.compcache`).

``from rmbuild.build import compile_spec`` (and :func:`build`, :class:`BuildResult`, ``plan``,
``action_key``...) is the library's public entry point; the names are looked up on first use,
so importing one module of this package (the loader reads :mod:`.compcache`'s ``KIND``) does
not import the whole build wing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# name -> the module of this package (or below it) that defines it
_EXPORTS = {
    "build": "rmbuild.build.target",
    "BuildResult": "rmbuild.build.running",
    "StageResult": "rmbuild.build.running",
    "Reporter": "rmbuild.build.running",
    "SilentReporter": "rmbuild.build.running",
    "TargetFailure": "rmbuild.build.running",
    "finished": "rmbuild.build.running",
    "compile_spec": "rmbuild.build.batch",
    "compile_targets": "rmbuild.build.batch",
    "_build_worker": "rmbuild.build.batch",
    "PlannedStage": "rmbuild.planning.stages",
    "action_key": "rmbuild.planning.stages",
    "plan": "rmbuild.planning.stages",
    "source_digest": "rmbuild.planning.stages",
}

__all__ = [name for name in _EXPORTS if not name.startswith("_")]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
