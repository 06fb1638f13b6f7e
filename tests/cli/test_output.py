"""Every rich table and print shows user values literally.

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
    package: str = "fake-pkg[extra]"

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
    assert "fake-pkg[extra]" in r.out


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
    from rmbuild.storage.store import open_store

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


# ------------------------------------------------------------- heartbeat and escape codes


def test_elapsed_reads_like_a_person_says_it() -> None:
    from rmbuild.cli._output import elapsed

    assert [elapsed(s) for s in (0, 59.9, 60, 125, 3599, 3720)] == [
        "0s",
        "59s",
        "1m00s",
        "2m05s",
        "59m59s",
        "1h02m",
    ]


def test_a_heartbeat_line_gives_the_step_the_time_and_the_tools_last_line() -> None:
    from rmbuild.cli._output import Heartbeat

    lines: list[str] = []
    beat = Heartbeat("rngd [2/2] furiosa-rngd (ab12cd34ef56)", interval=3600, write=lines.append)
    beat.beat()
    beat.line("Compiling kernel 7/8")
    beat.beat()
    assert lines == [
        "rngd [2/2] furiosa-rngd (ab12cd34ef56): still running, 0s",
        "rngd [2/2] furiosa-rngd (ab12cd34ef56): still running, 0s; last: Compiling kernel 7/8",
    ]


def test_a_heartbeat_beats_until_it_is_stopped() -> None:
    import threading

    from rmbuild.cli._output import Heartbeat

    lines: list[str] = []
    two = threading.Event()

    def write(line: str) -> None:
        lines.append(line)
        if len(lines) >= 2:
            two.set()

    beat = Heartbeat("step", interval=0.01, write=write).start()
    assert two.wait(30)
    beat.stop()
    count = len(lines)
    beat.stop()  # idempotent
    assert len(lines) == count  # nothing after stop() returned


def test_the_plain_reporter_with_its_heartbeat_still_pickles() -> None:
    """-j workers and Ray tasks get the reporter pickled."""
    import pickle

    from rmbuild.cli.compile import PlainReporter

    reporter = PlainReporter(False)
    reporter.stage_start("cpu", 0, 2, "onnx-export", "ab" * 32)
    try:
        copy = pickle.loads(pickle.dumps(reporter))
    finally:
        reporter.close()
    assert copy._prefix == reporter._prefix


def test_a_piped_compile_says_it_is_still_running(
    project: Project,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Piped, a long stage printed nothing until it ended (7 minutes for RNGD)."""
    from rmbuild.cli import _output

    monkeypatch.setattr(_output, "HEARTBEAT_S", 0.05)
    project.set_flags(lines=2, sleep=1.5)
    r = cli("compile", str(project.spec))
    assert r.code == 0, r.err
    beats = [line for line in r.err.splitlines() if "still running" in line]
    assert beats, r.err
    assert all(b.startswith("fake [1/1] fake-compile (") for b in beats)
    assert any(b.endswith("; last: log line 2") for b in beats), beats


def test_a_piped_toolchain_install_says_it_is_still_running(
    project: Project,
    data_dir: Path,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rmbuild.cli import _output

    folder = project.root / "profiles" / "toolchains"
    (folder / "tiny.yaml").write_text(
        "name: tiny\ndescription: a bare venv\nlock: tiny.lock\npackages: []\n"
    )
    (folder / "tiny.lock").write_text("# nothing pinned\n")
    monkeypatch.chdir(project.root)
    monkeypatch.setattr(_output, "HEARTBEAT_S", 0.01)
    r = cli("toolchain", "install", "tiny")
    assert r.code == 0, r.err
    assert "toolchain tiny: still running, " in r.err


def _colour_tool(folder: Path) -> Path:
    """A compiler that colours its output even into a pipe, then fails."""
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "colour-compiler"
    tool.write_text(
        f"#!{sys.executable}\n"
        "print('\\x1b[1m\\x1b[31merror:\\x1b[0m kernel \\x1b[33mmatmul_7\\x1b[0m failed')\n"
        "raise SystemExit(3)\n"
    )
    tool.chmod(0o755)
    return tool


def test_a_tools_colour_codes_stay_in_its_log_not_in_the_message(
    project: Project,
    tmp_path: Path,
    cli,  # noqa: ANN001
) -> None:
    import json as jsonlib
    import re

    project.write_profile("fake-compile", project.fake_profile(tool=str(_colour_tool(tmp_path))))
    r = cli("compile", str(project.spec))
    assert r.code == 4
    assert "\x1b" not in r.err
    assert "  error: kernel matmul_7 failed" in r.err
    log = Path(re.search(r"full log: (\S+)", r.err).group(1))  # type: ignore[union-attr]
    assert "\x1b[31merror:\x1b[0m" in log.read_text()  # the log keeps the tool's bytes
    obj = jsonlib.loads(cli("compile", str(project.spec), "--json").out)
    assert "  error: kernel matmul_7 failed" in obj["context"]


def test_an_error_shown_on_no_terminal_loses_escape_codes(capsys) -> None:  # noqa: ANN001
    from rmbuild.cli import _print_error
    from rmbuild.errors import ToolError

    _print_error(ToolError("\x1b[31mfxb\x1b[0m failed", tool="fxb", tail=["\x1b[2Kdone 50%"]))
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "error[tool-failed]: fxb failed" in err and "    done 50%" in err
