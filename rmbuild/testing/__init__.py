"""The backend contract kit: what every backend package checks against its own plugin.

A vendor's package runs it in its own tests, in either of two ways:

* pytest: subclass :class:`rmbuild.testing.pytest_suite.BackendContractTests` and set
  ``contract``; each part of the contract is one test, the target is built once per class;
* no pytest: ``python -m rmbuild.testing MODULE:ATTR`` (a :class:`BackendContract` object),
  or :func:`run_contract` from Python; each part prints PASS, FAIL or SKIP with the reason,
  and the last line counts them (exit 1 if any failed).

The parts: the plugin loads through its entry point and defines only declared hooks;
availability says why not and what installs it; its profiles and templates (shipped in the
package) render an argv no shell runs; the probe facts are in the key; a real build stores every
declared output; an artifact built here is compatible and a foreign one is refused with exit 6;
a session steps, generates the same greedy ids twice and closes; failures are typed errors with
their exit codes. See ``docs/plugins.md``.
"""

from __future__ import annotations

import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmbuild.testing.contract import (
    NO_BUILD,
    WITH_BUILD,
    BackendContract,
    Built,
    ContractFailure,
    ContractSkip,
    build,
    check_availability,
    check_compatibility,
    check_errors,
    check_interface,
    check_outputs_stored,
    check_probe_facts_in_key,
    check_session,
    check_templates,
)

__all__ = [
    "BackendContract",
    "Built",
    "CheckResult",
    "ContractFailure",
    "ContractSkip",
    "build",
    "check_availability",
    "check_compatibility",
    "check_errors",
    "check_interface",
    "check_outputs_stored",
    "check_probe_facts_in_key",
    "check_session",
    "check_templates",
    "run_contract",
]


@dataclass(frozen=True)
class CheckResult:
    """One part of the contract: ``status`` is ``passed``, ``failed`` or ``skipped``."""

    name: str
    status: str
    detail: str = ""


def _run(name: str, fn: Callable[..., Any], *args: Any) -> CheckResult:
    try:
        fn(*args)
    except ContractSkip as exc:
        return CheckResult(name, "skipped", str(exc))
    except ContractFailure as exc:
        return CheckResult(name, "failed", str(exc))
    except Exception as exc:  # an unexpected exception is a failure of the backend, with its trace
        return CheckResult(name, "failed", "".join(traceback.format_exception(exc)).strip())
    return CheckResult(name, "passed")


def run_contract(contract: BackendContract, root: Path | None = None) -> list[CheckResult]:
    """Every part of the contract, in order; the target (if given) is built once under
    ``root`` (a temp dir by default) and the build's parts are skipped where it cannot be."""
    results = [_run(fn.__name__, fn, contract) for fn in NO_BUILD]
    built: Built | None = None
    with tempfile.TemporaryDirectory(prefix="rmbuild-contract-") as tmp:
        try:
            built = build(contract, Path(root or tmp))
        except ContractSkip as exc:
            results += [CheckResult(fn.__name__, "skipped", str(exc)) for fn in WITH_BUILD]
        except Exception as exc:
            detail = f"the build failed: {type(exc).__name__}: {exc}"
            results += [CheckResult(fn.__name__, "failed", detail) for fn in WITH_BUILD]
        else:
            try:
                results += [_run(fn.__name__, fn, contract, built) for fn in WITH_BUILD]
            finally:
                built.store.close()
    return results
