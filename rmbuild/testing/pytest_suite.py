"""The backend contract as pytest tests: subclass :class:`BackendContractTests`.

::

    from rmbuild.testing import BackendContract
    from rmbuild.testing.pytest_suite import BackendContractTests

    class TestAcmeNPU(BackendContractTests):
        contract = BackendContract(backend="acme", model_yaml=HERE / "model.yaml", target="npu")

Each part of the contract is one test; the target is built once per class (a class-scoped
fixture), and the parts that cannot run here are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from rmbuild.testing.contract import (
    BackendContract,
    Built,
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


def _skipping(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ContractSkip as exc:
        pytest.skip(str(exc))


class BackendContractTests:
    """The contract's parts as test methods (not collected itself: no ``Test`` prefix)."""

    contract: ClassVar[BackendContract]

    @pytest.fixture(scope="class")
    @classmethod
    def built(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
        """The target, built once for the class into a store of its own."""
        root = tmp_path_factory.mktemp(f"contract-{cls.contract.backend}")
        result = _skipping(build, cls.contract, root)
        try:
            yield result
        finally:
            result.store.close()

    def test_interface(self) -> None:
        _skipping(check_interface, self.contract)

    def test_availability(self) -> None:
        _skipping(check_availability, self.contract)

    def test_templates(self) -> None:
        _skipping(check_templates, self.contract)

    def test_probe_facts_in_key(self) -> None:
        _skipping(check_probe_facts_in_key, self.contract)

    def test_outputs_stored(self, built: Built) -> None:
        _skipping(check_outputs_stored, self.contract, built)

    def test_compatibility(self, built: Built) -> None:
        _skipping(check_compatibility, self.contract, built)

    def test_session(self, built: Built) -> None:
        _skipping(check_session, self.contract, built)

    def test_errors(self, built: Built) -> None:
        _skipping(check_errors, self.contract, built)
