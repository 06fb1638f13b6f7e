"""The end of a many-target ``compile``: what was built, found cached, skipped and failed.

``compile --all`` keeps going past a target that cannot be built here or fails
(:func:`rmbuild.build.batch.compile_targets`), so its user needs one place that says how each target
ended: a summary on stderr (the result lines stay on stdout), and one row per target in
``--json``.
"""

from __future__ import annotations

from typing import Any

import click

from rmbuild.build import BuildResult
from rmbuild.build.batch import TargetFailure

BUILT, HIT, SKIPPED, FAILED, NOT_TRIED = "built", "hit", "skipped", "failed", "not tried"


def status(outcome: BuildResult | TargetFailure) -> str:
    """built | hit | skipped | failed."""
    if isinstance(outcome, TargetFailure):
        return SKIPPED if outcome.skipped else FAILED
    return HIT if outcome.hit else BUILT


def first_failure(outcomes: list[Any], strict: bool) -> BaseException | None:
    """The error the command ends with: the first failed target's (``strict``: a skipped
    target's too), else None."""
    for outcome in outcomes:
        if isinstance(outcome, TargetFailure) and (strict or not outcome.skipped):
            return outcome.error
    return None


def _error(exc: BaseException) -> dict[str, Any]:
    from rmbuild.errors import EXIT_INTERNAL, RmbuildError

    if isinstance(exc, RmbuildError):
        return {**exc.to_dict(), "exit_code": exc.exit_code}
    return {
        "error": "internal-error",
        "message": f"{type(exc).__name__}: {exc}",
        "context": [],
        "hint": "this is a bug in rmbuild; run again with -v for the traceback",
        "exit_code": EXIT_INTERNAL,
    }


def rows(model: str, names: list[str], outcomes: list[Any]) -> list[dict[str, Any]]:
    """One JSON row per target, in ``names`` order: ``status`` and, for a built or cached
    target, its artifact and stages; for a skipped or failed one, the error (what is missing
    and the commands that get it are its ``context`` and ``hint``)."""
    by_target = {o.target: o for o in outcomes}
    out = []
    for name in names:
        outcome = by_target.get(name)
        if isinstance(outcome, BuildResult):
            out.append(
                {
                    "model": outcome.model,
                    "target": outcome.target,
                    "status": status(outcome),
                    "artifact": outcome.artifact.key,
                    "hit": outcome.hit,
                    "stages": [
                        {
                            "profile": s.profile,
                            "key": s.key,
                            "hit": s.hit,
                            "seconds": round(s.seconds, 3),
                        }
                        for s in outcome.stages
                    ],
                }
            )
            continue
        row: dict[str, Any] = {
            "model": model,
            "target": name,
            "status": NOT_TRIED if outcome is None else status(outcome),
            "artifact": None,
            "hit": False,
            "stages": [],
        }
        if outcome is not None:
            row["error"] = _error(outcome.error)
        out.append(row)
    return out


def _first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    return str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__


def print_summary(names: list[str], outcomes: list[Any], seconds: float, strict: bool) -> None:
    """The summary on stderr: counts, then each target that did not build and why."""
    counts = {BUILT: 0, HIT: 0, SKIPPED: 0, FAILED: 0}
    for outcome in outcomes:
        counts[status(outcome)] += 1
    tried = {o.target for o in outcomes}
    not_tried = [n for n in names if n not in tried]
    parts = [f"{counts[BUILT]} built", f"{counts[HIT]} cached", f"{counts[SKIPPED]} skipped"]
    parts.append(f"{counts[FAILED]} failed")
    if not_tried:
        parts.append(f"{len(not_tried)} not tried")
    click.echo(f"{len(names)} targets in {seconds:.1f} s: {', '.join(parts)}", err=True)
    for outcome in outcomes:
        if not isinstance(outcome, TargetFailure):
            continue
        exc = outcome.error
        word = "skipped" if outcome.skipped else "failed"
        if outcome.skipped and strict:
            word = "skipped (fails with --strict)"
        code = getattr(exc, "exit_code", 1)
        click.echo(f"  {outcome.target}: {word}, exit {code}: {_first_line(exc)}", err=True)
        if outcome.skipped:
            # What is missing and the command that gets it, one line each.
            for line in getattr(exc, "context", []) or []:
                click.echo(f"      {line}", err=True)
    if not_tried:
        click.echo(f"  not tried (--fail-fast): {', '.join(not_tried)}", err=True)
