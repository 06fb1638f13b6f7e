"""Backend discovery through entry points: built-ins, broken plugins, duplicate names."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from rmbuild import plugins
from rmbuild.errors import BackendUnavailable


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    def install(*eps: EntryPoint) -> None:
        monkeypatch.setattr(plugins, "entry_points", lambda group: list(eps))
        plugins.registry.cache_clear()

    yield install
    plugins.registry.cache_clear()


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=plugins.GROUP)


def test_builtins_register_through_entry_points() -> None:
    plugins.registry.cache_clear()
    names = set(plugins.registry())
    assert {"onnxruntime", "openvino", "iree"} <= names


def test_a_plugin_that_fails_to_import_is_unavailable_with_its_error(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("ghost", "no_such_module.plugin:Ghost"))
    entry = plugins.registry()["ghost"]
    avail = entry.availability()
    assert not avail.ok and "ModuleNotFoundError" in avail.reason
    with pytest.raises(BackendUnavailable, match="failed to load"):
        plugins.get_backend("ghost")


def test_a_non_plugin_class_is_rejected(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("bad", "pathlib:Path"))
    assert "not a BackendPlugin" in plugins.registry()["bad"].error


def test_duplicate_names_are_an_error_naming_both(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(
        _ep("onnxruntime", "rmbuild.backends.onnxruntime.plugin:OnnxRuntimeBackend"),
        _ep("onnxruntime", "somevendor.plugin:OtherOrt"),
    )
    with pytest.raises(plugins.DuplicateBackend) as info:
        plugins.registry()
    assert "OnnxRuntimeBackend" in info.value.message and "OtherOrt" in info.value.message


def test_unknown_backend_lists_installed_ones(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("onnxruntime", "rmbuild.backends.onnxruntime.plugin:OnnxRuntimeBackend"))
    with pytest.raises(BackendUnavailable) as info:
        plugins.get_backend("tensorrt")
    assert "onnxruntime" in " ".join(info.value.context)
