"""Golden action keys: one per built-in profile, through ``action_key()`` itself.

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

from rmbuild import keys
from rmbuild.build import PlannedStage, action_key
from rmbuild.config import builtin_dir
from rmbuild.declare.spec import load_profile
from rmbuild.planning import stages
from rmbuild.toolrun import toolchains, toolid
from rmbuild.toolrun.toolchains import find_toolchain

# Bump together with the table below when what enters a key changes (see the docstring).
# 3: a key_env value enters as its sha256 digest (it may be a token); every key moved with the
# version, and the table now pins a set key_env variable (furiosa-rngd's CROSS_PREFIX) too.
EXPECTED_KEY_VERSION = 3

GOLDEN: dict[str, str] = {
    "furiosa-rngd": "57a3bfcab99379d3247ab2d1c1e7bb7788333109dbef1374dc020752e8b0cfa3",
    "iree-cpu": "3fbddea7d744d8e2ad873c462e27d78ad39c4d35617339467bbecb31ec97ed05",
    "iree-cuda": "7fac258e57d43846e305fc3522a07d64c7e5c2ad425b8840a3cf8ac2554aa2c0",
    "iree-import": "25ed2ef35300620c8961f32cffbd7c83512e3e3098962fd27f5e5df25799e153",
    "modelopt-autocast": "5ed3bdbd2fcfaf2b2931889f3c4ac17e51f6d121de6f6144ec346388f2481993",
    "onnx-export": "04db85c2f53cccec00f8f5ed5c6f12565ecdb60409349ae86b2b6873a2886cfe",
    "onnxruntime-cpu": "4963f8d5efa77e7e0b365fc7f45d739decdc2221377343f0b7f31ba91923242f",
    "onnxslim": "08b14bc23cec06b5e157147025c8d403033a131407d422aa5e4510c9e35afa00",
    "openvino-cpu": "803ea370a4be7e02ac38028f35ab1eb8f2ec84bcb0ec717e073b0052f979e3b8",
    "openvino-gpu": "c94fc4b288a90b6ad415503aed89bd05d293c13caa0770cb41399087980c3f8f",
    "openvino-npu": "05f288b6d8dc52d43e95c9ee8b067fa4a23c735e54de486d1e4cb3a6cda1a6aa",
    "polygraphy-trt": "f0732f58518ae7f8e275c0f5a622811e9f5ea77b2c4039e9192034a7665505e3",
    "rbln-ca25": "e6a5046671fb325b537b2c64b03efce2580a155e4153b17c87a8859dc4621c36",
    "remote-openai": "8da5d7a50158e77669d6ca24cf06a5811142245932cc60215c745343c545cc31",
    "tensorrt-fp16": "b5be6f452aa7f75b13ebc1d0d279ae1085dd3619c3221fc4c594f7ea41465b0e",
    "tensorrt-strong": "080395666d95af0c7508a56fee21c0394b49eff42436f3ecd2a5a21e820694a4",
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
    # key_env variables enter the key (as digests of their values): the caller's environment
    # must not move the table, so each gets a fixed value, which also pins how it is encoded.
    for path in _builtin_profiles():
        profile = load_profile(path).profile
        for name in [*profile.key_env, *find_toolchain(profile.toolchain).key_env]:
            monkeypatch.setenv(name, f"fixed-{name}")


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
