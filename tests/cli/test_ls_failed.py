"""Failures as data: `ls --failed`, retried by default, `--no-retry-failed`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Project


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_a_failed_build_is_listed_never_a_hit_and_retried(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(mode="fail", counter=str(counter))
    first = cli("compile", str(project.spec), "--json")
    first.assert_failure(4)
    listing = cli("ls", "--failed", "--json")
    assert listing.code == 0, listing.err
    (failure,) = listing.json()
    assert failure["model"] == "tiny" and failure["target"] == "fake"
    assert failure["profile"] == "fake-compile" and failure["exit_code"] == 3
    assert failure["attempts"] == 1 and len(failure["toolchain"]) == 64
    assert Path(failure["log_path"]).read_text().count("failed on purpose") == 1
    assert cli("ls", "--json").json() == []  # never an artifact, so never a hit
    # The next request runs the tool again (a flaky failure gets its retry).
    cli("compile", str(project.spec)).assert_failure(4)
    assert _runs(counter) == 2
    (again,) = cli("ls", "--failed", "--json").json()
    assert again["attempts"] == 2
    text = cli("ls", "--failed")
    assert "fake-compile" in text.out and failure["key"][:12] in text.out


def test_no_retry_failed_skips_the_known_failure_naming_its_log(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(mode="fail", counter=str(counter))
    cli("compile", str(project.spec)).assert_failure(4)
    (failure,) = cli("ls", "--failed", "--json").json()
    skipped = cli("compile", str(project.spec), "--no-retry-failed")
    skipped.assert_failure(4)
    assert _runs(counter) == 1, "the tool must not run again"
    assert "failed before for this key with the same toolchain" in skipped.err
    assert "--no-retry-failed" in skipped.err and "exit code 3" in skipped.err
    assert failure["log_path"] in skipped.err.replace("\n", "")


def test_no_retry_failed_builds_a_key_that_never_failed(project: Project, cli) -> None:  # noqa: ANN001
    result = cli("compile", str(project.spec), "--no-retry-failed", "--json")
    assert result.code == 0, result.err
    assert cli("ls", "--failed", "--json").json() == []


def test_a_success_clears_the_failure(project: Project, cli, monkeypatch) -> None:  # noqa: ANN001
    """The key stays; only the tool's behaviour changes (an env knob outside the key)."""
    from artifact_store import Store

    project.set_flags()
    ok = cli("compile", str(project.spec), "--json")
    assert ok.code == 0, ok.err
    key = ok.json()[0]["artifact"]
    with Store(project.store) as store:
        store.delete(key)
        store.record_failure(
            key,
            model="tiny",
            target="fake",
            backend="onnxruntime",
            profile="fake-compile",
            toolchain="0" * 64,
            message="earlier failure",
        )
    again = cli("compile", str(project.spec), "--no-retry-failed", "--json")
    assert again.code == 0, again.err  # another toolchain failed: no reason to skip
    assert cli("ls", "--failed", "--json").json() == []
