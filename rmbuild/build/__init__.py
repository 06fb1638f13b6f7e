"""Building: one stage (:mod:`.running`), a target's chain (:mod:`.walk`, :mod:`.target`), many
targets (:mod:`.batch`, :mod:`.executors`) and compiler caches (:mod:`.compcache`).

``from rmbuild.build import compile_spec`` (and :func:`build`, :class:`BuildResult`, ``plan``,
``action_key``...) is the library's public entry point; the names are looked up on first use,
so importing one module of this package (the loader reads :mod:`.compcache`'s ``KIND``) does
not import the whole build wing.
"""

from __future__ import annotations

from typing import Any

# The names library callers know from ``rmbuild.build``, by the module that defines them.
_TARGET = frozenset({"build"})
_RUNNING = frozenset(
    {"BuildResult", "StageResult", "Reporter", "SilentReporter", "TargetFailure", "finished"}
)
_BATCH = frozenset({"compile_spec", "compile_targets", "_build_worker"})
_STAGES = frozenset({"PlannedStage", "action_key", "plan", "source_digest"})

__all__ = sorted(n for n in _TARGET | _RUNNING | _BATCH | _STAGES if not n.startswith("_"))


def __getattr__(name: str) -> Any:
    # Plain imports (not importlib with a string) so that the structure test sees them.
    if name in _TARGET:
        from rmbuild.build import target as module
    elif name in _RUNNING:
        from rmbuild.build import running as module
    elif name in _BATCH:
        from rmbuild.build import batch as module
    elif name in _STAGES:
        from rmbuild.planning import stages as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)
