"""The contract kit (rmbuild.testing) run against the built-in backends.

ONNX Runtime, OpenVINO and IREE build and run here: their whole contract runs, the three
targets sharing one store so that the ONNX export is built once. FuriosaAI, TensorRT and
Rebellions need hardware or SDKs this machine lacks: the parts that need none run (interface,
availability, templates, probe facts where their tool is here). The kit itself is checked on
plugins that break the contract.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rmbuild.backends.base import BackendPlugin
from rmbuild.testing import (
    BackendContract,
    ContractFailure,
    check_availability,
    check_interface,
    check_templates,
    run_contract,
)
from rmbuild.testing.contract import Built, build
from rmbuild.testing.pytest_suite import BackendContractTests

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "examples" / "tiny-llama" / "model"


def _future(package: str) -> Any:
    """An artifact's metadata as if built by a release of ``package`` from the future."""

    def change(meta: dict[str, Any]) -> dict[str, Any]:
        meta["toolchain"]["packages"][package] = "2999.0.0"
        return meta

    return change


@pytest.fixture(scope="session")
def contract_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for every built-in backend's contract: the export is shared."""
    root = tmp_path_factory.mktemp("contract")
    spec = root / "model.yaml"
    spec.write_text(
        "name: contract\n"
        f"source: {{path: {MODEL}, format: hf}}\n"
        "targets:\n"
        "  cpu: {profile: onnxruntime-cpu}\n"
        "  openvino: {profile: openvino-cpu, flags: {compress_to_fp16: false}}\n"
        "  iree: {profile: iree-cpu}\n"
    )
    return root


class _Shared(BackendContractTests):
    """The suite, with the build in the shared store."""

    extra: str = ""

    @pytest.fixture(scope="class")
    @classmethod
    def built(cls, contract_root: Path) -> Iterator[Built]:
        for module in ("optimum", cls.extra):
            if importlib.util.find_spec(module) is None:
                pytest.skip(f"{module} is not installed")
        cls.contract.model_yaml = contract_root / "model.yaml"
        result = build(cls.contract, contract_root)
        try:
            yield result
        finally:
            result.store.close()

    def test_probe_facts_in_key(self, contract_root: Path) -> None:  # type: ignore[override]
        self.contract.model_yaml = contract_root / "model.yaml"
        super().test_probe_facts_in_key()


@pytest.mark.slow
class TestOnnxRuntimeContract(_Shared):
    extra = "onnxruntime"
    contract = BackendContract(
        backend="onnxruntime",
        target="cpu",
        incompatible=_future("onnxruntime"),
        bad_options={"device": "npu"},
    )


@pytest.mark.slow
class TestOpenVINOContract(_Shared):
    extra = "openvino"
    contract = BackendContract(
        backend="openvino",
        target="openvino",
        incompatible=_future("openvino"),
        bad_options={"device": "NPU.7"},
    )


@pytest.mark.slow
class TestIREEContract(_Shared):
    extra = "iree.runtime"
    contract = BackendContract(
        backend="iree", target="iree", incompatible=_future("iree-base-compiler")
    )


@pytest.mark.parametrize("backend", ["furiosa", "tensorrt", "rbln"])
def test_the_parts_that_need_no_hardware(backend: str) -> None:
    contract = BackendContract(backend=backend)
    check_interface(contract)
    avail = check_availability(contract)
    assert avail.ok or (avail.reason and avail.install)
    check_templates(contract)


# ---- the kit catches what breaks the contract ----------------------------------------------------


class InventedHook(BackendPlugin):
    name = "invented"

    def warm_up(self) -> None:  # a hook rmbuild does not have: never called
        pass


class WrongArity(BackendPlugin):
    name = "arity"

    def fingerprint(self, profile):  # noqa: ANN001, ANN201 - misses flags and toolchain
        return {}


class SilentUnavailable(BackendPlugin):
    name = "silent"

    def availability(self):  # noqa: ANN201
        from rmbuild.backends.base import Availability

        return Availability(ok=False)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    from rmbuild import plugins

    def register(name: str, cls: type) -> None:
        entry = plugins.BackendEntry(name, f"{__name__}:{cls.__name__}", cls(), package="vendor")
        monkeypatch.setattr(plugins, "registry", lambda: {name: entry})

    return register


@pytest.mark.parametrize(
    ("cls", "says"),
    [
        (InventedHook, "defines warm_up, which BackendPlugin does not declare"),
        (WrongArity, "fingerprint cannot take the hook's arguments"),
    ],
)
def test_the_interface_check_fails_a_broken_plugin(registered, cls: type, says: str) -> None:  # noqa: ANN001
    registered(cls.name, cls)
    with pytest.raises(ContractFailure, match=says):
        check_interface(BackendContract(backend=cls.name))


def test_unavailable_without_a_reason_fails_the_contract(registered) -> None:  # noqa: ANN001
    registered("silent", SilentUnavailable)
    with pytest.raises(ContractFailure, match="without a reason and an install line"):
        check_availability(BackendContract(backend="silent"))
    results = {r.name: r for r in run_contract(BackendContract(backend="silent"))}
    assert results["check_availability"].status == "failed"
    assert results["check_templates"].status == "failed"  # no profile of its own anywhere
    assert results["check_session"].status == "skipped"  # no target given


def test_a_template_that_runs_a_shell_fails_the_contract(project, registered) -> None:  # noqa: ANN001
    class FakeBackend(BackendPlugin):
        name = "onnxruntime"

    registered("onnxruntime", FakeBackend)
    project.write_template("fake.argv.j2", "/bin/sh\n-c\n{{ tool }} {{ output }}\n")
    contract = BackendContract(
        backend="onnxruntime", model_yaml=project.spec, target="fake", profiles=["fake-compile"]
    )
    with pytest.raises(ContractFailure, match="runs a shell"):
        check_templates(contract)
