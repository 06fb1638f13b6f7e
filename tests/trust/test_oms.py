"""rmbuild.trust.oms without the `sign` extra: signing is one line saying what to install."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

EXIT_UNAVAILABLE = 7


def test_sign_without_model_signing_is_exit_7_naming_the_extra(
    project: Project, cli, keys, build_artifact, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    ours, _ = keys
    artifact = build_artifact()
    monkeypatch.setitem(sys.modules, "model_signing", None)  # as where it is not installed
    refused = cli("sign", artifact, "--key", str(ours.private))
    refused.assert_failure(EXIT_UNAVAILABLE)
    assert "model_signing" in refused.err and "pip install 'rmbuild[sign]'" in refused.err
    # Nothing else needs it: the artifact runs its provenance and listing as before.
    assert cli("show", artifact, "--provenance").code == 0
