"""Every rich table and print shows user values literally (issue 6 #16).

rich reads ``[word]`` as a style tag and drops it: ``pip install 'rmbuild[onnx]'`` printed as
``pip install 'rmbuild'``. Each test renders one command with a bracketed value where a user,
a plugin or a file supplies text, and checks the brackets survive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Project

INSTALL = "pip install 'rmbuild[onnx]'"


@dataclass
class _Avail:
    ok: bool
    reason: str = ""
    install: str = ""
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class _Entry:
    avail: _Avail
    target: str = "fake_pkg.plugin:Fake"
    plugin: Any = None

    def availability(self) -> _Avail:
        return self.avail


@pytest.fixture
def bracketed_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    from rmbuild import plugins

    entries = {
        "ghost": _Entry(_Avail(False, "needs the [onnx] extra", INSTALL)),
    }
    monkeypatch.setattr(plugins, "registry", lambda: entries)


def test_plain_and_styled_print_text_exactly() -> None:
    from rich.console import Console

    from rmbuild.cli._output import plain, styled

    console = Console(width=200, record=True, highlight=False)
    texts = [INSTALL, "[bold]x[/]", "ends with \\", "[red]", "a[1]", "\\[b]"]
    for text in texts:
        console.print(plain(text))
        console.print(styled(("label", "bold"), " ", text, (text, "red")))
    console.print(plain(None))
    expected = [line for t in texts for line in (t, f"label {t}{t}")] + [""]
    assert console.export_text().splitlines() == expected


def test_backends_table_keeps_the_extra(bracketed_backends, cli) -> None:  # noqa: ANN001
    r = cli("backends")
    assert r.code == 0, r.err
    assert INSTALL in r.out and "needs the [onnx] extra" in r.out


def test_backends_json_is_unchanged(bracketed_backends, cli) -> None:  # noqa: ANN001
    r = cli("backends", "--json")
    assert r.json()[0]["install"] == INSTALL


def test_profiles_table(project: Project, cli) -> None:  # noqa: ANN001
    text = project.fake_profile().replace("backend: onnxruntime", "backend: npu[x]")
    project.write_profile(
        "fake-compile", text.replace("output_format: fake-bin", "output_format: bin[v2]")
    )
    r = cli("profiles", "--from", str(project.root))
    assert r.code == 0, r.err
    row = next(line for line in r.out.splitlines() if line.startswith("fake-compile"))
    assert "hf -> bin[v2]" in row and "npu[x]" in row and "no backend 'npu[x]'" in row


def test_profiles_table_with_a_broken_profile(project: Project, cli) -> None:  # noqa: ANN001
    project.write_profile(
        "broken", project.fake_profile().replace("fake-compile", "broken") + '"[x]": 1\n'
    )
    r = cli("profiles", "--from", str(project.root))
    assert r.code == 0, r.err
    row = next(line for line in r.out.splitlines() if line.startswith("broken"))
    assert "unavailable: invalid:" in row and "'[x]'" in r.out


def test_info(monkeypatch: pytest.MonkeyPatch, cli) -> None:  # noqa: ANN001
    from rmbuild.cli import info

    fake = {
        "platform": {"system": "Linux", "release": "6.1[rt]", "python": "3.11"},
        "cpu": {"model": "Xeon [Sapphire]", "arch": "x86_64", "cores": 4, "isa": ["avx512[bf16]"]},
        "gpus": [{"name": "GPU[a]", "compute_capability": "9.0", "driver": "550"}],
        "npus": [{"vendor": "rbln", "device": "[ATOM]"}],
        "toolchains": [
            {
                "name": "tc[a]",
                "python": "/p",
                "python_version": "3.11",
                "packages": {"x[y]": "1", "z[w]": None},
            },
            {"name": "broken", "python": "/q", "error": "needs [extra]"},
        ],
        "backends": {"iree": {"available": False, "reason": f"run {INSTALL}", "versions": {}}},
    }
    monkeypatch.setattr(info, "machine_info", lambda: fake)
    r = cli("info")
    assert r.code == 0, r.err
    for text in (
        "6.1[rt]",
        "Xeon [Sapphire]",
        "avx512[bf16]",
        "GPU[a]",
        "rbln [ATOM]",
        "tc[a] (python 3.11): x[y] 1",
        "not installed: z[w]",
        "broken: needs [extra]",
        f"iree: unavailable: run {INSTALL}",
    ):
        assert text in r.out, text


def _bracketed_artifact(tmp_path: Path) -> str:
    """An artifact whose stored names and metadata hold brackets (built through the store API:
    names that model.yaml would refuse can still come from another tool's index)."""
    from rmbuild.store import open_store

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "w[a].bin").write_bytes(b"weights")
    key = "ab" * 32
    with open_store() as store:
        manifest = store.put_tree(tree)
        store.commit(
            key,
            manifest,
            model="m[one]",
            target="t[cpu]",
            backend="b[two]",
            metadata={
                "profile": "p[three]",
                "stage": "compile",
                "tool": {"name": "tool[x]", "package": "pkg[extra]", "version": "1.0[post]"},
                "toolchain": {"name": "tc[a]", "python": "3.11", "packages": {"dep[b]": "2"}},
                "argv": ["tool", "--opt=[v]"],
                "flags": {"level[k]": "[v]"},
                "fingerprint": {"sdk[z]": "[nine]"},
                "durations": {"tool_s[s]": 1},
                "spec_file": "/x/[model].yaml",
                "host": {"node": "host[a]"},
            },
        )
    return key


def test_ls_table(store_dir: Path, tmp_path: Path, cli) -> None:  # noqa: ANN001
    _bracketed_artifact(tmp_path)
    r = cli("ls")
    assert r.code == 0, r.err
    for text in ("m[one]", "t[cpu]", "p[three]", "b[two]", "pkg[extra] 1.0[post]"):
        assert text in r.out, text


def test_show(store_dir: Path, tmp_path: Path, cli) -> None:  # noqa: ANN001
    key = _bracketed_artifact(tmp_path)
    r = cli("show", key[:12])
    assert r.code == 0, r.err
    for text in (
        "m[one]",
        "t[cpu]",
        "p[three] (compile)",
        "b[two]",
        "host[a]",
        "/x/[model].yaml",
        "tool --opt=[v]",
        "level[k] = '[v]'",
        "tool tool[x] pkg[extra] 1.0[post]",
        "toolchain tc[a]",
        "dep[b] 2",
        "sdk[z] [nine]",
        "tool_s[s] 1",
        "w[a].bin",
    ):
        assert text in r.out, text


def test_error_rendering_keeps_brackets_in_message_context_and_hint(capsys) -> None:  # noqa: ANN001
    from rmbuild.cli import _print_error
    from rmbuild.errors import BackendUnavailable

    _print_error(
        BackendUnavailable("backend [iree] is missing", context=["found [none]"], hint=INSTALL)
    )
    err = capsys.readouterr().err
    assert "error[backend-unavailable]: backend [iree] is missing" in err
    assert "  found [none]" in err and f"hint: {INSTALL}" in err


def test_error_from_a_command_keeps_brackets(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text(profile='"fake[gpu]"'))
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert "no profile named 'fake[gpu]'" in r.err
