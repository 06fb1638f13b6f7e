"""ModelSpec and BuildProfile: strict schemas whose errors name file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rmbuild.declare.sources import source_path
from rmbuild.declare.spec import BuildProfile, ModelSpec, load_model_spec, load_profile
from rmbuild.errors import SpecError

if TYPE_CHECKING:
    from conftest import Project


def test_loads_the_project_spec(project: Project) -> None:
    loaded = load_model_spec(project.spec)
    assert loaded.spec.name == "tiny"
    assert loaded.root == project.root
    assert source_path(loaded) == project.model
    assert list(loaded.spec.targets) == ["fake"]
    assert loaded.spec.targets["fake"].profile == "fake-compile"


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ('name: "x; touch pwned"\n', 1, "name", "pattern"),
        ("name: tiny\ntargets: {}\n", None, "source", "required"),
        ("name: tiny\nsource: {path: m}\ntargets: {}\n", 3, "targets", "at least 1"),
        (
            "name: tiny\nsource: {path: m, format: gguf}\ntargets: {a: {profile: p}}\n",
            2,
            "source.format",
            "'gguf'",
        ),
        (
            "name: tiny\nsource: {path: m}\ntargets:\n  'bad name!': {profile: p}\n",
            4,
            "targets",
            "must match",
        ),
        (
            "name: tiny\nsource: {path: m}\ntask: chat\ntargets: {a: {profile: p}}\n",
            3,
            "task",
            "'chat'",
        ),
        (
            "name: tiny\nsource: {path: m}\ntargets:\n  a:\n    profile: p\n    stages:\n"
            "      onnx-export: {flag: {}}\n",
            7,
            "targets.a.stages.onnx-export.flag",
            "unknown field",
        ),
    ],
)
def test_model_spec_errors(
    tmp_path: Path, text: str, line: int | None, field: str, words: str
) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_model_spec(path)
    err = info.value
    assert err.field == field
    if line is not None:
        assert err.line == line
    assert words in err.message
    assert str(path) in err.message


def test_profile_runtime_flags_must_be_flags(project: Project) -> None:
    path = project.write_profile(
        "fake-compile", project.fake_profile().replace("[threads]", "[threads, nope]")
    )
    with pytest.raises(SpecError) as info:
        load_profile(path)
    assert info.value.field == "runtime_flags" and "nope" in info.value.message


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("timeout: 30", "timeout: 0", "timeout"),
        ("outputs:\n  - model.bin", "outputs: []", "outputs"),
        ("stage: compile", "stage: link", "stage"),
        ("tool:\n", "tool:\n  version: 3\n", "tool.version"),
    ],
)
def test_profile_errors_name_the_field(project: Project, old: str, new: str, field: str) -> None:
    path = project.write_profile("fake-compile", project.fake_profile().replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_profile(path)
    assert info.value.field == field
    assert info.value.file == path and info.value.line is not None


def test_profile_named_unlike_its_file(project: Project, cli) -> None:  # noqa: ANN001
    project.write_profile(
        "fake-compile", project.fake_profile().replace("name: fake-compile", "name: other")
    )
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert "declares name 'other'" in r.err


def test_schemas_are_strict() -> None:
    for model in (ModelSpec, BuildProfile):
        schema = model.model_json_schema()
        assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("serve", "line", "field", "words"),
    [
        ("serve: {order: [gpu, tpu]}\n", 5, "serve.order.1", "'tpu'"),
        ("serve: {order: [cpu, gpu, cpu]}\n", 5, "serve.order", "repeated: cpu"),
        ("serve: {order: []}\n", 5, "serve.order", "at least 1"),
        ("serve: {prefer: [cpu]}\n", 5, "serve.prefer", "unknown field"),
    ],
)
def test_serve_order_errors(tmp_path: Path, serve: str, line: int, field: str, words: str) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("name: tiny\nsource: {path: m}\ntargets:\n  a: {profile: p}\n" + serve)
    with pytest.raises(SpecError) as err:
        load_model_spec(path)
    assert err.value.field == field
    assert err.value.line == line
    assert words in str(err.value)


def test_serve_order_is_optional_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    base = "name: tiny\nsource: {path: m}\ntargets:\n  a: {profile: p}\n"
    path.write_text(base)
    assert load_model_spec(path).spec.serve is None
    path.write_text(base + "serve:\n  order: [remote, cpu]\n")
    assert load_model_spec(path).spec.serve.order == ["remote", "cpu"]
