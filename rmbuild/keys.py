"""The action key: one object, one ``compute()``, one ``KEY_VERSION``.

Same key => same artifact => no rebuild. Everything that can change a stage's output is in the
key, and nothing else is.

The rule: bump ``KEY_VERSION`` on any change to the key's composition — a field added, removed
or encoded differently, or a change in what ``rmbuild.planning.stages.action_key()`` puts into
a field (e.g. the tool identified by its digest instead of its name). Two tests enforce it:
``tests/test_keys.py`` pins the encoding of a hand-built key, and ``tests/test_keys_golden.py``
pins the key of every built-in profile through ``action_key()`` with fixed environment facts, so
a refactor cannot silently invalidate (or worse, alias) every user's cache.

History: 1 = the first release; 2 = tools identified by content (executable, interpreter and
declared files' digests, version-command output), toolchain/profile ``key_env``;
3 = a ``key_env`` value enters as ``sha256:<hex>`` of the value, never as the value (it may be
a token, and the key's dict is stored in the index, shown by ``show --json`` and ``why``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

KEY_VERSION = 3


def canonical_json(value: Any) -> bytes:
    """Sorted keys, fixed separators, UTF-8: the same value always gives the same bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def tree_digest(files: dict[str, str]) -> str:
    """Digest of a set of files: relative path -> content digest (no absolute paths)."""
    return hashlib.sha256(canonical_json({"files": files})).hexdigest()


@dataclass(frozen=True)
class ActionKey:
    """Everything that decides one stage's output."""

    # Content digests of every input, by role (e.g. "model" -> tree digest of the HF folder, or
    # the manifest digest of the upstream artifact). Content, never names or paths: two models
    # with the same graph but different weights must not share an artifact (ONNX Runtime #6455).
    inputs: dict[str, str]
    # What kind of step, which plugin loads the result, and which profile made it.
    stage: str
    backend: str
    profile: str
    # Flags after defaults and overrides, minus the profile's runtime_flags: a runtime-only
    # knob in the key forces needless recompiles (vllm-rbln PR#822).
    flags: dict[str, Any]
    # The rendered command and config files with every path replaced by its role name, so the
    # same build in another checkout or store location hits.
    argv: list[str]
    configs: dict[str, str]
    # The tool by identity, not by name: its package version, and the digest of the file when
    # the tool is one file we ship. A compiler upgrade must miss (vllm-rbln PR#653).
    tool: dict[str, Any]
    # The toolchain environment the tool runs in: Python + pinned package versions.
    toolchain: dict[str, Any]
    # The environment facts the backend declares (device arch, SKU, CPU ISA, driver).
    fingerprint: dict[str, Any]
    # Files copied from the input into the artifact (tokenizer, config): part of its content.
    carry: list[str] = field(default_factory=list)
    # The profile's env for the tool, and the env vars it allow-lists from the caller's
    # environment; flags hidden in env vars must still be recorded (optimum-neuron #457). A
    # caller variable (key_env) by the digest of its value (toolenv.secret_digest).
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"key_version": KEY_VERSION, **asdict(self)}

    def canonical(self) -> bytes:
        return canonical_json(self.to_dict())

    def compute(self) -> str:
        """The action key: sha256 of the canonical JSON, hex."""
        return hashlib.sha256(self.canonical()).hexdigest()
