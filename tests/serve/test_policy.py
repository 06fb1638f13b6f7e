"""Which stored artifact serves a logical model: the policy's order (NPU, GPU, CPU, remote by
default; model.yaml's ``serve.order``), devices this machine lacks, ``--device`` pins, never a
compile unless ``--build``, and ``--remote`` pulling what the store lacks. The artifacts are
made by the test suite's stand-in compiler (milliseconds); nothing here loads them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from artifact_store import Store
from rmbuild.build import compile_spec
from rmbuild.errors import ArtifactNotFound, BackendUnavailable, UsageError
from rmbuild.planning import policy
from rmbuild.serve.model import resolve_model

if TYPE_CHECKING:
    from conftest import Project

NPU = {"class": "npu", "vendor": "furiosa", "name": "rngd"}
GPU = {"class": "gpu", "vendor": "nvidia", "name": "h100"}
CLASSES = {"npu-t": "npu", "gpu-t": "gpu", "cpu-t": "cpu", "remote-t": "remote", "any-t": "any"}


def _project(project: Project, order: list[str] | None = None) -> Path:
    """One target per device class, each a copy of the stand-in's profile of that class."""
    base = project.fake_profile()
    lines = ["name: tiny", "source: {path: model, format: hf}", "targets:"]
    for target, resource in CLASSES.items():
        profile = f"fake-{resource}"
        text = base.replace("name: fake-compile", f"name: {profile}")
        project.write_profile(profile, f"resource: {resource}\n{text}")
        lines.append(f"  {target}: {{profile: {profile}, flags: {{name: {target}}}}}")
    if order is not None:
        lines.append(f"serve: {{order: [{', '.join(order)}]}}")
    return project.write_spec("\n".join(lines) + "\n")


def _build(project: Project, *targets: str) -> None:
    store = Store(project.store)
    try:
        compile_spec(project.spec, list(targets), store=store)
    finally:
        store.close()


def _targets(model: object) -> list[str]:
    return [c.target for c in model.candidates]  # type: ignore[attr-defined]


def test_the_default_order_is_npu_gpu_cpu_then_remote(project: Project) -> None:
    spec = _project(project)
    _build(project, *CLASSES)
    with Store(project.store) as store:
        model = resolve_model(store, str(spec), devices=[NPU, GPU])
    # A portable artifact ("any") runs on the CPU: right after the CPU's.
    assert _targets(model) == ["npu-t", "gpu-t", "cpu-t", "any-t", "remote-t"]
    assert model.order == ("npu", "gpu", "cpu", "any", "remote")


def test_by_name_too_and_a_missing_device_leaves_its_artifact_out(project: Project) -> None:
    _project(project)
    _build(project, *CLASSES)
    with Store(project.store) as store:
        model = resolve_model(store, "tiny", devices=[GPU])
    assert _targets(model) == ["gpu-t", "cpu-t", "any-t", "remote-t"]
    assert [(c.target, why) for c, why in model.excluded] == [
        ("npu-t", "no npu device for onnxruntime here")
    ]


def test_model_yaml_declares_the_order_and_which_classes_serve(project: Project) -> None:
    spec = _project(project, order=["remote", "cpu"])
    _build(project, *CLASSES)
    with Store(project.store) as store:
        model = resolve_model(store, str(spec), devices=[NPU, GPU])
        # By name as well: the order comes from the model.yaml its artifacts were built from.
        by_name = resolve_model(store, "tiny", devices=[NPU, GPU])
    assert _targets(model) == _targets(by_name) == ["remote-t", "cpu-t", "any-t"]
    left = {c.target: why for c, why in model.excluded}
    assert left["npu-t"] == "class npu is not in the serving order"
    assert set(left) == {"npu-t", "gpu-t"}


def test_nothing_that_can_run_here_names_every_reason(project: Project) -> None:
    spec = _project(project, order=["gpu"])
    _build(project, "gpu-t", "cpu-t")
    with Store(project.store) as store, pytest.raises(BackendUnavailable) as err:
        resolve_model(store, str(spec), devices=[])
    assert "gpu-t" in " ".join(err.value.context) and "no gpu device" in " ".join(err.value.context)
    assert "serve.order" in (err.value.hint or "")


def test_device_pins_one_candidate(project: Project) -> None:
    spec = _project(project)
    _build(project, *CLASSES)
    with Store(project.store) as store:
        model = resolve_model(store, str(spec), devices=[NPU, GPU])
    model.pin("cpu-t")
    assert _targets(model) == ["cpu-t"]
    with pytest.raises(UsageError, match="no candidate 'tpu'") as err:
        model.pin("tpu")
    assert any("cpu-t" in line for line in err.value.context)


def test_serve_never_compiles_unless_asked(project: Project) -> None:
    spec = _project(project, order=["cpu", "gpu"])
    with Store(project.store) as store:
        with pytest.raises(ArtifactNotFound, match="no stored artifact"):
            resolve_model(store, str(spec), devices=[])
        assert store.list() == []  # no tool ran
        notes: list[str] = []
        model = resolve_model(store, str(spec), devices=[], build=True, notes=notes.append)
        # The best target this machine runs (no GPU here): the CPU's, and only that one.
        assert _targets(model) == ["cpu-t"]
        assert {r.target for r in store.list()} == {"cpu-t"}
        assert notes == ["building tiny:cpu-t (--build)"]
        # Stored now: a second --build builds nothing.
        resolve_model(store, str(spec), devices=[], build=True, notes=notes.append)
        assert len(notes) == 1


def test_build_needs_a_model_yaml(project: Project) -> None:
    _project(project)
    _build(project, "cpu-t")
    with Store(project.store) as store, pytest.raises(UsageError, match="needs a model.yaml"):
        resolve_model(store, "tiny", build=True, devices=[])


def test_remote_pulls_the_targets_the_store_lacks(project: Project, tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    from artifact_store.remote import Remote

    spec = _project(project)
    _build(project, "cpu-t", "gpu-t")
    remote = Remote(f"file://{tmp_path / 'remote'}")
    with Store(project.store) as built:
        remote.push(built, [r.key for r in built.list()])
    with Store(tmp_path / "host") as host:
        notes: list[str] = []
        model = resolve_model(host, str(spec), devices=[GPU], remote=remote, notes=notes.append)
        assert _targets(model) == ["gpu-t", "cpu-t"]
        assert sorted(n.split(" ")[1] for n in notes) == ["tiny:cpu-t", "tiny:gpu-t"]
        # Held now: nothing is pulled again.
        notes.clear()
        resolve_model(host, str(spec), devices=[GPU], remote=remote, notes=notes.append)
        assert notes == []


def test_an_unreachable_remote_is_a_note_and_the_store_still_serves(
    project: Project, tmp_path: Path
) -> None:
    spec = _project(project)
    _build(project, "cpu-t")

    class Down:
        display = "s3://down"

        def resolve(self, ref: str) -> object:
            from artifact_store.errors import RemoteError

            raise RemoteError("s3://down", "connection refused")

    notes: list[str] = []
    with Store(project.store) as store:
        model = resolve_model(store, str(spec), devices=[], remote=Down(), notes=notes.append)  # type: ignore[arg-type]
    assert _targets(model) == ["cpu-t"]
    assert "connection refused" in notes[0] and "serving what is stored here" in notes[0]


def test_serve_order_default_and_declared() -> None:
    assert policy.serve_order() == ("npu", "gpu", "cpu", "any", "remote")
    assert policy.serve_order(["remote", "gpu"]) == ("remote", "gpu")
    assert policy.serve_order(["cpu", "any", "npu"]) == ("cpu", "any", "npu")


def test_target_remote_resolves_to_the_remote_targets_without_a_local_device(
    project: Project,
) -> None:
    from rmbuild.declare.spec import load_model_spec

    spec = _project(project)
    resolution = policy.resolve(load_model_spec(spec), ["remote"], devices=[])
    assert resolution.names == ["remote-t"]
    (cand,) = resolution.candidates
    # Its server is asked when it builds and loads, not here: no "no device" note.
    assert cand.device_present and cand.why == "builds here"


def test_serve_cli_build_without_a_model_yaml_is_a_usage_error(project: Project, cli) -> None:  # noqa: ANN001
    pytest.importorskip("uvicorn")
    result = cli("serve", "tiny", "--build")
    assert result.code == 2
    assert "--build needs a model.yaml" in result.err
