"""The ONNX Runtime backend's compatibility rule, availability and fingerprint."""

from __future__ import annotations

import pytest

from rmbuild.backends.onnxruntime import plugin as ort_plugin
from rmbuild.backends.onnxruntime.plugin import OnnxRuntimeBackend
from rmbuild.errors import IncompatibleArtifact


def _meta(level: str, built: str, isa: list[str] | None = None) -> dict:
    return {
        "stage": "compile",
        "flags": {"opt_level": level},
        "toolchain": {"packages": {"onnxruntime": built}},
        "fingerprint": {"cpu_isa": isa} if isa is not None else {},
    }


@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    def set_here(version: str | None, isa: list[str] | None = None) -> None:
        monkeypatch.setattr(ort_plugin.probe, "installed_version", lambda: version)
        monkeypatch.setattr(ort_plugin, "cpu_info", lambda: {"isa": isa or ["avx2"]})

    return set_here


def test_extended_loads_on_equal_or_newer_ort(here) -> None:  # noqa: ANN001
    here("1.32.0")
    OnnxRuntimeBackend().check_compatible(_meta("extended", "1.32.0"))
    OnnxRuntimeBackend().check_compatible(_meta("extended", "1.20.1"))


def test_extended_refuses_an_older_ort(here) -> None:  # noqa: ANN001
    here("1.20.0")
    with pytest.raises(IncompatibleArtifact, match=r"1\.32\.0, newer than this machine's 1\.20\.0"):
        OnnxRuntimeBackend().check_compatible(_meta("extended", "1.32.0"))


def test_level_all_needs_same_major_minor(here) -> None:  # noqa: ANN001
    here("1.33.0")
    with pytest.raises(IncompatibleArtifact, match="same major.minor"):
        OnnxRuntimeBackend().check_compatible(_meta("all", "1.32.0", ["avx2"]))
    here("1.32.5")
    OnnxRuntimeBackend().check_compatible(_meta("all", "1.32.0", ["avx2"]))


def test_level_all_needs_the_cpu_isa_it_was_built_for(here) -> None:  # noqa: ANN001
    here("1.32.0", isa=["avx2"])
    with pytest.raises(IncompatibleArtifact, match="avx512f"):
        OnnxRuntimeBackend().check_compatible(_meta("all", "1.32.0", ["avx2", "avx512f"]))


def test_missing_runtime_is_incompatible_with_install_hint(here) -> None:  # noqa: ANN001
    here(None)
    with pytest.raises(IncompatibleArtifact) as info:
        OnnxRuntimeBackend().check_compatible(_meta("extended", "1.32.0"))
    assert "rmbuild[onnx]" in (info.value.hint or "")
    avail = OnnxRuntimeBackend().availability()
    assert not avail.ok and "not installed" in avail.reason and "rmbuild[onnx]" in avail.install


def test_fingerprint_keys_isa_only_for_level_all(here) -> None:  # noqa: ANN001
    here("1.32.0", isa=["avx2", "fma"])
    backend = OnnxRuntimeBackend()
    assert backend.fingerprint(None, {"opt_level": "extended"}) == {}  # type: ignore[arg-type]
    assert backend.fingerprint(None, {"opt_level": "all"}) == {  # type: ignore[arg-type]
        "cpu_isa": ["avx2", "fma"]
    }


def test_other_devices_are_refused(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(IncompatibleArtifact, match="CPU here, not on 'GPU'"):
        OnnxRuntimeBackend().create_session(tmp_path, {}, {"device": "GPU"})
