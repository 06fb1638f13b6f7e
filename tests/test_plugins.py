"""Plugins: backend discovery, the declared hook interface, what plugin packages ship
(profiles, templates, toolchains, CLI commands) and the conflicts between packages."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from rmbuild import config, plugins
from rmbuild.backends.base import BackendPlugin, hook_names
from rmbuild.errors import BackendUnavailable, PluginConflict

REPO = Path(__file__).resolve().parents[1]


def _clear() -> None:
    plugins.registry.cache_clear()
    plugins.plugin_commands.cache_clear()
    config.plugin_resources.cache_clear()
    config._check_packages.cache_clear()


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Replace the installed entry points (every group) with the given ones."""

    def install(*eps: EntryPoint) -> None:
        def fake(group: str) -> list[EntryPoint]:
            return [ep for ep in eps if ep.group == group]

        monkeypatch.setattr(plugins, "entry_points", fake)
        monkeypatch.setattr(importlib.metadata, "entry_points", fake)
        _clear()

    yield install
    _clear()


def _ep(name: str, value: str, group: str = plugins.GROUP) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=group)


def _builtin_eps() -> list[EntryPoint]:
    return [ep for ep in importlib.metadata.entry_points(group=plugins.GROUP)]


# ---- discovery ---------------------------------------------------------------------------------


def test_builtins_register_through_entry_points() -> None:
    plugins.registry.cache_clear()
    names = set(plugins.registry())
    assert {"onnxruntime", "openvino", "iree"} <= names
    assert plugins.registry()["onnxruntime"].package == "rmbuild"


def test_a_plugin_that_fails_to_import_is_unavailable_with_its_error(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("ghost", "no_such_module.plugin:Ghost"))
    entry = plugins.registry()["ghost"]
    avail = entry.availability()
    assert not avail.ok and "ModuleNotFoundError" in avail.reason
    with pytest.raises(BackendUnavailable, match="failed to load"):
        plugins.get_backend("ghost")


def test_a_non_plugin_class_is_rejected(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("bad", "pathlib:Path"))
    assert "not a BackendPlugin" in plugins.registry()["bad"].error


def test_duplicate_names_are_an_error_naming_both(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(
        _ep("onnxruntime", "rmbuild.backends.onnxruntime.plugin:OnnxRuntimeBackend"),
        _ep("onnxruntime", "somevendor.plugin:OtherOrt"),
    )
    with pytest.raises(plugins.DuplicateBackend) as info:
        plugins.registry()
    assert "OnnxRuntimeBackend" in info.value.message and "OtherOrt" in info.value.message


def test_unknown_backend_lists_installed_ones(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("onnxruntime", "rmbuild.backends.onnxruntime.plugin:OnnxRuntimeBackend"))
    with pytest.raises(BackendUnavailable) as info:
        plugins.get_backend("tensorrt")
    assert "onnxruntime" in " ".join(info.value.context)


# ---- the declared interface --------------------------------------------------------------------


class MisspeltPlugin(BackendPlugin):
    """A vendor's plugin with a typo: ``stage_flag`` would never be called."""

    name = "misspelt"

    def stage_flag(self, profile, flags, input_dir):  # noqa: ANN001, ANN201
        return {"max_shapes": "x"}


class HelperPlugin(BackendPlugin):
    """A plugin with a public helper whose name is nowhere near a hook: allowed at load."""

    name = "helper"

    def serve_command(self) -> str:
        return "vendor-serve"


def test_a_misspelt_hook_fails_the_plugin_naming_both(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("misspelt", f"{__name__}:MisspeltPlugin"))
    entry = plugins.registry()["misspelt"]
    assert entry.plugin is None
    assert "MisspeltPlugin.stage_flag" in entry.error and "'stage_flags'" in entry.error
    with pytest.raises(BackendUnavailable) as info:
        plugins.get_backend("misspelt")
    assert info.value.exit_code == 7 and "stage_flag" in info.value.message


def test_a_public_helper_far_from_any_hook_loads(fake_entry_points) -> None:  # noqa: ANN001
    fake_entry_points(_ep("helper", f"{__name__}:HelperPlugin"))
    assert isinstance(plugins.get_backend("helper"), HelperPlugin)


def test_every_builtin_plugin_defines_only_declared_hooks() -> None:
    hooks = hook_names()
    for ep in _builtin_eps():
        cls = ep.load()
        extra = [n for n in plugins._own_public_names(cls) if n not in hooks]
        assert extra == [], (ep.name, extra)


def test_every_hook_rmbuild_calls_is_declared_with_a_default_and_a_docstring() -> None:
    # The hooks the build, the compiler cache and `show` call, and the loader's.
    called = {
        "stage_flags",
        "check_stage",
        "compiler_cache_facts",
        "compiler_cache_keeps_versions",
        "artifact_details",
        "fingerprint",
        "prepare_outputs",
        "check_compatible",
        "grade",
        "create_session",
        "availability",
        "probe",
    }
    assert called <= hook_names()
    base = BackendPlugin()
    assert base.stage_flags(None, {}, Path()) == {}  # type: ignore[arg-type]
    assert base.compiler_cache_facts(None, {}, None) == {}  # type: ignore[arg-type]
    assert base.artifact_details(lambda rel: b"") == {}
    assert base.check_stage(None, {}, None) is None  # type: ignore[func-returns-value,arg-type]
    assert BackendPlugin.compiler_cache_keeps_versions is False
    for name in called - {"compiler_cache_keeps_versions"}:
        assert getattr(BackendPlugin, name).__doc__, name


def test_nothing_in_rmbuild_probes_a_plugin_or_reporter_with_getattr() -> None:
    probe = re.compile(
        r"(getattr|hasattr)\(\s*(plugin|entry\.plugin|_plugin\(|get_backend\(|reporter|self\.plugin)"
    )
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "rmbuild").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if probe.search(line)
    ]
    assert offenders == []


def test_the_reporter_protocol_declares_stage_note() -> None:
    from rmbuild.build import Reporter, SilentReporter

    assert "stage_note" in vars(Reporter) and Reporter.stage_note.__doc__
    assert SilentReporter().stage_note("p", "k", "m") is None


# ---- what plugin packages ship -----------------------------------------------------------------

PROFILE = """\
name: {name}
backend: onnxruntime
stage: compile
input_format: hf
output_format: vendor-bin
toolchain: {toolchain}
tool: {{name: vendor-cc}}
template: {template}
outputs: [model.bin]
"""


def _package(root: Path, module: str, profiles: dict[str, str], templates: tuple = ()) -> Path:
    """A vendor package ``module`` on sys.path whose folder ships profiles/templates."""
    folder = root / module
    (folder / "profiles" / "toolchains").mkdir(parents=True)
    (folder / "templates").mkdir()
    (folder / "__init__.py").write_text("")
    for name, toolchain in profiles.items():
        text = PROFILE.format(name=name, toolchain=toolchain, template=f"{name}.argv.j2")
        (folder / "profiles" / f"{name}.yaml").write_text(text)
        (folder / "templates" / f"{name}.argv.j2").write_text("{{ tool }}\n{{ output }}\n")
    for name in templates:
        (folder / "templates" / name).write_text("{{ tool }}\n")
    return folder


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("vendor_")]:
        del sys.modules[name]


def _res(name: str, module: str) -> EntryPoint:
    return _ep(name, module, config.RESOURCES_GROUP)


def test_a_plugin_package_is_searched_after_the_user_and_before_the_builtins(
    fake_entry_points,  # noqa: ANN001
    site: Path,
    tmp_path: Path,
) -> None:
    folder = _package(site, "vendor_a", {"vendor-a-npu": "vendor-a"})
    (folder / "profiles" / "toolchains" / "vendor-a.yaml").write_text("name: vendor-a\n")
    fake_entry_points(*_builtin_eps(), _res("vendor-a", "vendor_a"))
    project = tmp_path / "proj"
    (project / "profiles").mkdir(parents=True)
    (project / ".git").mkdir()
    (Path(os.environ["RMBUILD_CONFIG_DIR"]) / "profiles").mkdir(parents=True)
    found = config.search_folders("profiles", project)
    assert [f.origin for f in found] == ["project", "user", "plugin", "built-in"]
    assert found[-2].path == (folder / "profiles").resolve() and found[-2].package == "vendor_a"

    from rmbuild.declare.profiles import find_profile, profile_origins
    from rmbuild.declare.templating import render_argv
    from rmbuild.toolrun.toolchains import find_toolchain

    assert find_profile("vendor-a-npu", project).profile.output_format == "vendor-bin"
    assert profile_origins(project)["vendor-a-npu"].label == "vendor_a"
    assert profile_origins(project)["onnx-export"].label == "rmbuild"
    assert find_toolchain("vendor-a", project).name == "vendor-a"
    argv = render_argv("vendor-a-npu.argv.j2", {"tool": "t", "output": "o"}, project)
    assert argv == ["t", "o"]


def test_profiles_and_backends_show_the_package(fake_entry_points, site: Path, cli) -> None:  # noqa: ANN001
    _package(site, "vendor_a", {"vendor-a-npu": "onnxruntime"})
    fake_entry_points(*_builtin_eps(), _res("vendor-a", "vendor_a"))
    rows = {r["name"]: r for r in json.loads(cli("profiles", "--json").out)}
    assert rows["vendor-a-npu"]["package"] == "vendor_a"
    assert rows["vendor-a-npu"]["origin"] == "plugin"
    assert rows["onnx-export"]["package"] == "rmbuild"
    table = cli("profiles").out
    assert re.search(r"vendor-a-npu .* vendor_a ", table)
    backends = {r["name"]: r for r in json.loads(cli("backends", "--json").out)}
    assert backends["onnxruntime"]["package"] == "rmbuild"


def test_two_packages_defining_one_profile_is_an_error_naming_both(
    fake_entry_points,  # noqa: ANN001
    site: Path,
    cli,  # noqa: ANN001
) -> None:
    _package(site, "vendor_a", {"npu-fast": "onnxruntime"})
    _package(site, "vendor_b", {"npu-fast": "onnxruntime"})
    fake_entry_points(*_builtin_eps(), _res("a", "vendor_a"), _res("b", "vendor_b"))
    with pytest.raises(PluginConflict) as info:
        config.search_folders("profiles", None)
    assert "'npu-fast'" in info.value.message
    assert "vendor_a" in info.value.message and "vendor_b" in info.value.message
    result = cli("profiles")
    result.assert_failure(7)
    assert "vendor_a and vendor_b" in result.err


def test_a_package_cannot_replace_a_builtin_profile_or_template(
    fake_entry_points,  # noqa: ANN001
    site: Path,
) -> None:
    _package(site, "vendor_a", {"onnx-export": "onnxruntime"})
    fake_entry_points(*_builtin_eps(), _res("a", "vendor_a"))
    with pytest.raises(
        PluginConflict,
        match="profile 'onnx-export': rmbuild and vendor_a|"
        "profile 'onnx-export': vendor_a and rmbuild",
    ):
        config.search_folders("profiles", None)
    _clear()
    _package(site, "vendor_c", {}, templates=("ovc.argv.j2",))
    fake_entry_points(*_builtin_eps(), _res("c", "vendor_c"))
    with pytest.raises(PluginConflict, match="template 'ovc.argv.j2'"):
        config.search_folders("templates", None)


def test_a_resources_entry_that_does_not_resolve_is_searched_nowhere(
    fake_entry_points, cli
) -> None:  # noqa: ANN001
    fake_entry_points(*_builtin_eps(), _res("ghost", "no_such_vendor_pkg"))
    (ghost,) = config.plugin_resources()
    assert ghost.folder is None and "no_such_vendor_pkg" in ghost.error
    assert [f.origin for f in config.search_folders("profiles", None)][-1] == "built-in"
    listed = cli("backends", "--json")
    assert listed.code == 0 and json.loads(listed.out)  # stdout stays one JSON array
    assert "registers resources 'ghost'" in listed.err and "cannot be found" in listed.err


# ---- CLI commands of plugin packages -----------------------------------------------------------

COMMAND = '''
import click

@click.command("npu-smi")
@click.option("--json", "as_json", is_flag=True)
def command(as_json):
    """The vendor's device listing."""
    click.echo("vendor device 0: ok")
'''


def test_a_plugin_package_adds_a_cli_command(fake_entry_points, site: Path, cli) -> None:  # noqa: ANN001
    (site / "vendor_cmd.py").write_text(textwrap.dedent(COMMAND))
    fake_entry_points(_ep("npu-smi", "vendor_cmd:command", plugins.COMMANDS_GROUP))
    result = cli("npu-smi")
    assert result.code == 0 and "vendor device 0: ok" in result.out
    helped = cli("--help").out
    assert "npu-smi" in helped and "(from vendor_cmd)" in helped
    assert "Did you mean 'npu-smi'" in cli("npu-sm").err


def test_a_plugin_command_cannot_take_a_builtin_name(fake_entry_points, site: Path, cli) -> None:  # noqa: ANN001
    (site / "vendor_cmd.py").write_text(textwrap.dedent(COMMAND))
    fake_entry_points(
        _ep("compile", "vendor_cmd:command", plugins.COMMANDS_GROUP),
    )
    result = cli("--help")
    result.assert_failure(7)
    assert "'compile'" in result.err and "vendor_cmd" in result.err


def test_a_plugin_command_that_is_not_a_click_command_is_exit_7(
    fake_entry_points,  # noqa: ANN001
    site: Path,
    cli,  # noqa: ANN001
) -> None:
    (site / "vendor_cmd.py").write_text("command = 42\n")
    fake_entry_points(_ep("npu-smi", "vendor_cmd:command", plugins.COMMANDS_GROUP))
    result = cli("npu-smi")
    result.assert_failure(7)
    assert "not a click command" in result.err
