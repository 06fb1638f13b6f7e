from __future__ import annotations

import json

import pytest

from artifact_store import CorruptManifest, FileEntry, Manifest
from artifact_store.records import canonical_json

D = "0" * 64


def test_manifest_json_is_canonical_and_round_trips() -> None:
    m = Manifest.from_files({"b/x": FileEntry(D, 3, 0o755), "a": FileEntry(D, 2)})
    raw = m.to_json()
    assert raw == canonical_json(json.loads(raw))
    assert json.loads(raw) == {
        "version": 1,
        "files": {
            "a": {"digest": D, "size": 2, "mode": 0o644},
            "b/x": {"digest": D, "size": 3, "mode": 0o755},
        },
    }
    again = Manifest.from_json(raw, m.digest)
    assert again == m
    assert again.size == 5


@pytest.mark.parametrize(
    "rel", ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "", "a\\..\\b", "C:/x"]
)
def test_escaping_paths_are_rejected(rel: str) -> None:
    with pytest.raises(CorruptManifest):
        Manifest.from_files({rel: FileEntry(D, 1)})
    raw = canonical_json({"version": 1, "files": {rel: {"digest": D, "size": 1, "mode": 420}}})
    with pytest.raises(CorruptManifest):
        Manifest.from_json(raw, "f" * 64)


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"version":2,"files":{}}', b'{"version":1,"files":{"a":{"size":1}}}'],
)
def test_malformed_manifests_are_rejected(raw: bytes) -> None:
    with pytest.raises(CorruptManifest):
        Manifest.from_json(raw, "f" * 64)
