"""Attachments: documents about an artifact's content, kept beside it, carried by push and pull."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact_store import Store, attachments
from artifact_store.errors import InvalidArgument, RemoteCorrupt
from artifact_store.remote import Remote

SUBJECT = "ab" * 32


def _remote(tmp_path: Path) -> tuple[Remote, Path]:
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    folder = tmp_path / "remote"
    folder.mkdir()
    return Remote(f"file://{folder}"), folder


def test_an_attachment_is_kept_once_by_its_digest_and_read_back(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store:
        first = attachments.Attachment(SUBJECT, "oms.sigstore.json", b'{"a": 1}')
        path = attachments.put(store, first)
        assert path.name == f"{first.digest}.oms.sigstore.json"
        assert attachments.put(store, first) == path  # idempotent
        other = attachments.Attachment(SUBJECT, "slsa.sigstore.json", b'{"b": 2}')
        attachments.put(store, other)
        assert {a.kind for a in attachments.local(store, SUBJECT)} == {
            "oms.sigstore.json",
            "slsa.sigstore.json",
        }
        assert attachments.local(store, SUBJECT, "slsa.sigstore.json") == [other]
        assert attachments.local(store, "cd" * 32) == []


def test_a_file_changed_after_it_was_written_is_not_read_as_what_its_name_says(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "store") as store:
        path = attachments.put(store, attachments.Attachment(SUBJECT, "oms.sigstore.json", b"x"))
        path.chmod(0o644)
        path.write_bytes(b"y")
        assert attachments.local(store, SUBJECT) == []
        assert attachments.damaged(store, SUBJECT) == [path.name]


@pytest.mark.parametrize(
    ("subject", "kind"), [("not-a-digest", "oms"), (SUBJECT, "../x"), (SUBJECT, "")]
)
def test_bad_names_are_refused(subject: str, kind: str) -> None:
    with pytest.raises(InvalidArgument):
        attachments.Attachment(subject, kind, b"x")


def test_push_sends_what_the_remote_lacks_and_fetch_checks_each(tmp_path: Path) -> None:
    remote, folder = _remote(tmp_path)
    with Store(tmp_path / "store") as store:
        doc = attachments.Attachment(SUBJECT, "oms.sigstore.json", b"signed")
        attachments.put(store, doc)
        assert attachments.push(remote, store, [SUBJECT, "cd" * 32]) == 1
        assert attachments.push(remote, store, [SUBJECT]) == 0  # already there
    assert attachments.fetch(remote, SUBJECT) == [doc]
    assert attachments.fetch(remote, "cd" * 32) == []
    stored = folder / "attachments" / SUBJECT / doc.name
    stored.write_bytes(b"forged")
    with pytest.raises(RemoteCorrupt, match="does not match its digest"):
        attachments.fetch(remote, SUBJECT)
