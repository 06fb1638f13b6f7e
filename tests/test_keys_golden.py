"""Golden action keys: one per built-in profile, through ``action_key()`` itself (issue 6 #7).

``tests/test_keys.py`` pins the encoding of a hand-built :class:`ActionKey`; that cannot see a
change in what ``action_key()`` puts into it (a new field, a different tool identity, env that
starts or stops entering the key). This table can: each built-in profile's key is computed for
a fixed input digest, the profile's default flags, and fixed environment facts (toolchain
identity, tool versions and file digests, backend fingerprint), so the only thing that can move
a digest is a change to the profile itself or to the key's composition.

The rule (also in ``rmbuild/keys.py``): when a digest here changes because the composition
changed, bump ``KEY_VERSION`` in the same commit and paste the new table (the failure message
prints it). When it changed because a built-in profile or template changed, only the table is
updated: those users' keys move anyway, which is the point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rmbuild import keys, stages, toolchains, toolid
from rmbuild.build import PlannedStage, action_key
from rmbuild.config import builtin_dir
from rmbuild.spec import load_profile
from rmbuild.toolchains import find_toolchain

# Bump together with the table below when what enters a key changes (see the docstring).
EXPECTED_KEY_VERSION = 2

GOLDEN: dict[str, str] = {
    "furiosa-rngd": "90c6c01a74ae123c4297c1e0373f09c4fb78b51d0ad86e3110a7c4cad6b6467f",
    "iree-cpu": "dd6875b1725bd02f7d49e0e6f071b23417c0e7926f3a6af4b3d672bd6e53297b",
    "iree-cuda": "c89864c2b77a5ecaec5e1bd27a70472c3e0ae0de4b4f2a835f9c7b25f08ea5d8",
    "iree-import": "2ba8e759044939fe19dc8b0e6259451d6fe283095d226675e8cf3021af1da224",
    "modelopt-autocast": "782e2c53cb25d8d6aca3745926c091d6e09458002feb4ae97b661dcbe704a297",
    "onnx-export": "a73e81c21aa16ac9d2cd4407268142ba70152688b2d6e63913789e00323b70bb",
    "onnxruntime-cpu": "35fb19debb3e81ea179806fd25ad624e761d0e6c8bb6f6b72ef4af9255d049a0",
    "onnxslim": "7420ce474a207d412e4c9a9019d06d01a50fc7f5087f40aa9f08754feb20d285",
    "openvino-cpu": "496bfccd2a47b6e58012c3306a66f836c82a35ab68e61593c508890d0aeb6b50",
    "openvino-gpu": "cd7c65b38282461db54943beec05872e4545cc494ae261e21b16a81aac03134f",
    "openvino-npu": "e80ffc6dab14f59f0227613be8dc10579cc1dc6ce19fa03b844d94011b094d24",
    "polygraphy-trt": "cbca36462ac9b8d7c717d3ffd829bbc4175a3718fb6614b938c5802a6e9be379",
    "rbln-ca25": "97ac104e233f850fe9b11f687799990a357f23956a76e746acc0ebb31baaa0ea",
    "tensorrt-fp16": "f377ae3466d857be0767992fc837b37a6bf370dc043c674fd64c40fafb44fd79",
    "tensorrt-strong": "e8163867ac9b50a53ca194a8a3887c62028936be4957e03ac140bb7cd4ceddb9",
}

INPUT = {"model": "a" * 64}


def _fixed_identity(self: toolchains.Toolchain) -> dict[str, object]:
    return {
        "name": self.name,
        "python": "3.11.7",
        "packages": {package: "1.0.0" for package in sorted(self.packages)},
    }


def _fixed_hasher(paths: list[Path]) -> Mapping[Path, str]:
    # A digest of the file's name only: stable across machines, still different per file.
    return {path: hashlib.sha256(path.name.encode()).hexdigest() for path in paths}


class _FixedFingerprint:
    """A backend whose fingerprint is a fixed fact: host probes are not what this pins."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fingerprint(self, profile: Any, flags: Any, toolchain: Any = None) -> dict[str, Any]:
        return {"fixed": self.name}


@pytest.fixture
def fixed_facts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_bytes(b"\x7fELF a stand-in binary")
    tool.chmod(0o755)
    monkeypatch.setattr(toolchains.Toolchain, "identity", _fixed_identity)
    monkeypatch.setattr(toolchains.Toolchain, "package_version", lambda self, package: "1.0.0")
    monkeypatch.setattr(toolchains.Toolchain, "which", lambda self, name: tool)
    monkeypatch.setattr(
        toolid,
        "identity_files",
        lambda profile, toolchain: {p: Path("/fixed") / p for p in profile.tool.files},
    )
    monkeypatch.setattr(toolid, "version_output", lambda profile, toolchain: "fixed 1.0.0")
    monkeypatch.setattr(stages, "get_backend", _FixedFingerprint)
    # key_env variables enter the key by value: the caller's environment must not move the table.
    for path in _builtin_profiles():
        profile = load_profile(path).profile
        for name in [*profile.key_env, *find_toolchain(profile.toolchain).key_env]:
            monkeypatch.delenv(name, raising=False)


def _builtin_profiles() -> list[Path]:
    return sorted(builtin_dir("profiles").glob("*.yaml"))


def _golden_key(path: Path) -> str:
    loaded = load_profile(path)
    profile = loaded.profile
    stage = PlannedStage(loaded, find_toolchain(profile.toolchain), dict(profile.flags))
    return action_key(stage, dict(INPUT), None, hasher=_fixed_hasher).compute()


def test_key_version_is_the_one_the_table_was_made_with() -> None:
    assert keys.KEY_VERSION == EXPECTED_KEY_VERSION, (
        "KEY_VERSION changed: re-pin GOLDEN in this file in the same commit"
    )


@pytest.mark.usefixtures("fixed_facts")
def test_every_builtin_profile_has_a_pinned_key() -> None:
    found = {path.stem: _golden_key(path) for path in _builtin_profiles()}
    table = "\n".join(f'    "{name}": "{digest}",' for name, digest in sorted(found.items()))
    assert found == GOLDEN, (
        "action keys of built-in profiles moved. If what enters a key changed, bump "
        "KEY_VERSION (rmbuild/keys.py) and EXPECTED_KEY_VERSION; either way paste the new "
        f"table:\nGOLDEN = {{\n{table}\n}}"
    )


@pytest.mark.usefixtures("fixed_facts")
def test_the_table_sees_a_change_in_composition(monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard must be able to fail: a key built with one more input is a different key.
    path = builtin_dir("profiles") / "onnxruntime-cpu.yaml"
    before = _golden_key(path)
    real = keys.ActionKey.to_dict
    monkeypatch.setattr(keys.ActionKey, "to_dict", lambda self: {**real(self), "new": 1})
    assert _golden_key(path) != before
