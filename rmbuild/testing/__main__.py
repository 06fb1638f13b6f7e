"""``python -m rmbuild.testing MODULE:ATTR [--root DIR]``: run the backend contract kit on the
:class:`~rmbuild.testing.BackendContract` object ``ATTR`` of ``MODULE`` (dotted, e.g.
``test_acme:TestAcmeNPU.contract``), without pytest."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from rmbuild.testing import BackendContract, run_contract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmbuild.testing", description=__doc__)
    parser.add_argument("contract", help="MODULE:ATTR naming a BackendContract")
    parser.add_argument("--root", type=Path, help="folder for the build (default: a temp dir)")
    args = parser.parse_args(argv)
    module, _, attr = args.contract.partition(":")
    contract: object = importlib.import_module(module)
    for name in (attr or "CONTRACT").split("."):  # a class attribute too: Tests.contract
        contract = getattr(contract, name)
    if not isinstance(contract, BackendContract):
        parser.error(f"{args.contract} is not a BackendContract")
    results = run_contract(contract, args.root)
    for result in results:
        print(f"{result.status.upper():8} {result.name}")
        for line in result.detail.splitlines():
            print(f"         {line}")
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "skipped")}
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
