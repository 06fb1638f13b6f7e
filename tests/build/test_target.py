"""Building one target: a compile reads each profile file once and asks the plugin registry for
each stage's backend once, however many times the planning and building code needs them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Project


def _two_stages(project: Project) -> None:
    """fake-compile (hf -> fake-bin) feeding fake-second (fake-bin -> fake-bin2)."""
    second = project.fake_profile().replace("name: fake-compile", "name: fake-second")
    second = second.replace("input_format: hf", "input_format: fake-bin")
    second = second.replace("output_format: fake-bin", "output_format: fake-bin2")
    project.write_profile("fake-second", second + "depends_on: fake-compile\n")
    project.write_spec(
        "name: tiny\nsource: {path: model}\ntargets:\n  two:\n    profile: fake-second\n"
    )


def _count(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, seen: list[str], key) -> None:  # noqa: ANN001
    real = getattr(module, name)

    def counting(arg: Any) -> Any:
        seen.append(key(arg))
        return real(arg)

    monkeypatch.setattr(module, name, counting)


def test_a_two_stage_compile_reads_each_profile_once_and_asks_each_backend_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmbuild import plugins
    from rmbuild.build import compile_spec
    from rmbuild.declare import profiles
    from rmbuild.planning import stages
    from rmbuild.storage.store import open_store

    _two_stages(project)
    read: list[str] = []
    asked: list[str] = []
    _count(monkeypatch, profiles, "load_profile", read, lambda path: Path(path).name)
    # The registry is asked by its module's name and by the name stages imported.
    _count(monkeypatch, plugins, "get_backend", asked, str)
    _count(monkeypatch, stages, "get_backend", asked, str)
    with open_store() as store:
        (result,) = compile_spec(project.spec, ["two"], store=store)
    # Both stages ran their tool: every hook was used (check_stage, fingerprint, stage_flags,
    # prepare_outputs), and the plan ran twice (spec errors first, then the build).
    assert [s.hit for s in result.stages] == [False, False]
    assert sorted(read) == ["fake-compile.yaml", "fake-second.yaml"]
    assert asked == ["onnxruntime", "onnxruntime"]


def test_a_profile_changed_within_one_compile_is_read_again(project: Project) -> None:
    from rmbuild.declare.profiles import find_profile, read_once

    with read_once():
        first = find_profile("fake-compile", project.root)
        assert find_profile("fake-compile", project.root) is first
        path = project.root / "profiles" / "fake-compile.yaml"
        path.write_text(path.read_text() + "# a comment that changes the size\n")
        assert find_profile("fake-compile", project.root) is not first
    # Outside a block every call reads the file.
    assert find_profile("fake-compile", project.root) is not find_profile(
        "fake-compile", project.root
    )
