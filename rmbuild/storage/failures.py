"""Failures as data: a failed build is recorded, never served, retried by default.

The record holds the key, the tool's exit code, the log and a digest of what ran (the tool's
and the toolchain's identity), so ``compile --no-retry-failed`` can skip a key that already
failed with the same toolchain and ``rmbuild ls --failed`` can list them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rmbuild.errors import ToolError, ToolStopped

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.declare.spec import LoadedSpec
    from rmbuild.keys import ActionKey
    from rmbuild.planning.stages import PlannedStage


def failure_identity(key: ActionKey) -> str:
    """What ran, for failure records: the tool's and the toolchain's identity."""
    ident = json.dumps({"tool": key.tool, "toolchain": key.toolchain}, sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()


def record(
    store: Store,
    spec: LoadedSpec,
    target: str,
    stage: PlannedStage,
    key: ActionKey,
    key_hex: str,
    exc: ToolError,
    log_path: Path,
) -> None:
    """Record a tool failure of ``key_hex`` in the index: never a hit, retried next time."""
    if isinstance(exc, ToolStopped):
        return  # a cancelled build (SIGTERM, Ctrl-C) is no failure of the key
    try:
        store.record_failure(
            key_hex,
            model=spec.spec.name,
            target=target,
            backend=stage.profile.backend,
            profile=stage.profile.name,
            toolchain=failure_identity(key),
            message=exc.message,
            exit_code=exc.returncode,
            log_path=log_path if log_path.exists() else None,
        )
    except Exception:  # noqa: BLE001 - bookkeeping must never hide the tool's own error
        pass


def refuse_known(store: Store, key: ActionKey, key_hex: str, stage: PlannedStage) -> None:
    """``--no-retry-failed``: a key that failed with this toolchain is not retried."""
    failed = store.get_failure(key_hex)
    if failed is None or failed.toolchain != failure_identity(key):
        return
    log = Path(failed.log_path) if failed.log_path else None
    raise ToolError(
        f"{stage.profile.name} failed before for this key with the same toolchain "
        f"({failed.failed_at:%Y-%m-%d %H:%M} UTC"
        + ("" if failed.exit_code is None else f", exit code {failed.exit_code}")
        + f", {failed.attempts} attempt(s)); not retrying it (--no-retry-failed)",
        tool=stage.profile.tool.name,
        log_path=log if log is not None and log.exists() else None,
        hint="run without --no-retry-failed to try again; `rmbuild ls --failed` lists failures",
    )
