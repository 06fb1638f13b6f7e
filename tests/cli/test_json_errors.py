"""A command given --json that fails prints the error as one JSON object on stdout.

`compile --json` used to print nothing on stdout when a build failed: a script reading its
output got an empty string and had to scrape stderr. The object is the error's ``to_dict()``
(``error``, ``message``, ``context``, ``hint``, ``exit_code``); stderr keeps the human message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest

if TYPE_CHECKING:
    from conftest import Project

# One failing command line per command that takes --json: (argv, exit code, error code).
# "{spec}" is the test project's model.yaml.
CASES: dict[str, tuple[list[str], int, str]] = {
    "compile": (["compile", "{spec}", "--json"], 4, "tool-failed"),
    "redo": (["redo", "{spec}", "--json"], 4, "tool-failed"),
    "why": (["why", "{spec}", "-t", "nope", "--json"], 2, "unknown-target"),
    "check": (["check", "0123456789ab", "--json"], 5, "artifact-not-found"),
    "run": (["run", "-a", "0123456789ab", "--json"], 5, "artifact-not-found"),
    "ls": (["ls", "--index-url", "nosuchdriver://x", "--json"], 8, "store-unavailable"),
    "show": (["show", "0123456789ab", "--json"], 5, "artifact-not-found"),
    "verify": (["verify", "0123456789ab", "--json"], 5, "artifact-not-found"),
    "sign": (["sign", "0123456789ab", "--key", "{tmp}/k.pem", "--json"], 5, "artifact-not-found"),
    "checkout": (["checkout", "0123456789ab", "{tmp}/out", "--json"], 5, "artifact-not-found"),
    "export": (
        ["export", "0123456789ab", "--to", "vllm", "{tmp}/out", "--json"],
        5,
        "artifact-not-found",
    ),
    "push": (["push", "0123456789ab", "--json"], 2, "usage-error"),
    "pull": (["pull", "0123456789ab", "--json"], 2, "usage-error"),
    "gc": (["gc", "--index-url", "nosuchdriver://x", "--json"], 8, "store-unavailable"),
    # These read the machine and never fail on their own: an option click refuses (before it
    # reads --json) is their failure here.
    "info": (["info", "--json", "--bogus"], 2, "usage-error"),
    "backends": (["backends", "--json", "--bogus"], 2, "usage-error"),
    "profiles": (["profiles", "--json", "--bogus"], 2, "usage-error"),
    "toolchain install": (["toolchain", "install", "nosuch", "--json"], 3, "spec-error"),
    "toolchain ls": (["toolchain", "ls", "--json", "--bogus"], 2, "usage-error"),
}


def _commands_with_json() -> set[str]:
    from rmbuild.cli import COMMANDS, cli

    ctx = click.Context(cli)
    found = set()
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        subs = command.commands if isinstance(command, click.Group) else {"": command}
        for sub_name, sub in subs.items():
            if any(p.name == "as_json" for p in sub.params):
                found.add(f"{name} {sub_name}".strip())
    return found


def test_every_command_that_takes_json_has_a_case() -> None:
    assert _commands_with_json() == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_a_failing_command_given_json_prints_one_error_object(
    name: str,
    project: Project,
    tmp_path: Path,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RMBUILD_REMOTE", raising=False)
    project.set_flags(mode="fail")
    argv, code, error = CASES[name]
    r = cli(*(a.format(spec=project.spec, tmp=tmp_path) for a in argv))
    assert r.code == code, (r.out, r.err)
    obj = json.loads(r.out)  # exactly one JSON document on stdout
    assert obj["error"] == error and obj["exit_code"] == code
    assert obj["message"] and isinstance(obj["context"], list) and "hint" in obj
    assert "error" in r.err.lower()  # the human message is still on stderr


def test_compile_json_error_carries_the_tools_tail_and_log(project: Project, cli) -> None:  # noqa: ANN001
    project.set_flags(mode="fail", lines=3)
    r = cli("compile", str(project.spec), "--json")
    obj = json.loads(r.out)
    assert obj["error"] == "tool-failed" and "failed with exit code 3" in obj["message"]
    assert "  fatal: the fake compiler failed on purpose" in obj["context"]
    assert any(line.startswith("full log: ") for line in obj["context"])


def test_no_error_object_without_json(project: Project, cli) -> None:  # noqa: ANN001
    project.set_flags(mode="fail")
    r = cli("compile", str(project.spec))
    assert r.code == 4 and r.out == ""


def test_a_command_that_printed_its_json_result_adds_no_second_document(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
) -> None:
    """verify --json prints its report, then exits 6 for a corrupt artifact: stdout stays the
    one report, which says what is corrupt."""
    from artifact_store import Store

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"original")
    with Store(store_dir) as store:
        manifest = store.put_tree(src)
        store.commit("ee" * 32, manifest, model="m", target="t", backend="b", metadata={})
        blob = store.blob_path(manifest.files["f"].digest)
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    r = cli("verify", "--json")
    assert r.code == 6
    report = json.loads(r.out)
    assert report["checked"] == 1 and list(report["corrupt"]) == ["ee" * 32]
