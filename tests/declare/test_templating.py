"""Template rendering: sandboxed, StrictUndefined, one argv argument per line, errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmbuild.declare.templating import render, render_argv
from rmbuild.errors import TemplateError


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    """A project folder with templates/; the .git marker keeps the search from going higher."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "templates").mkdir()
    return tmp_path


def _write(tdir: Path, name: str, text: str) -> Path:
    path = tdir / "templates" / name
    path.write_text(text, encoding="utf-8")
    return path


def test_undefined_variable_names_template_file_and_line(tdir: Path) -> None:
    path = _write(tdir, "t.argv.j2", "tool\n--x\n{{ flags.missing }}\n")
    with pytest.raises(TemplateError) as info:
        render("t.argv.j2", {"flags": {}}, tdir)
    err = info.value
    assert err.file == str(path)
    assert err.line == 3
    assert "undefined" in err.message and "missing" in err.message
    assert err.hint


def test_undefined_top_level_name(tdir: Path) -> None:
    _write(tdir, "t.j2", "a\n\n{{ nope }}\n")
    with pytest.raises(TemplateError) as info:
        render("t.j2", {}, tdir)
    assert info.value.line == 3 and "nope" in info.value.message


def test_undefined_never_renders_as_empty(tdir: Path) -> None:
    # A plain Environment would render '' and silently drop an argument.
    _write(tdir, "t.j2", "{{ flags.opt }}|\n")
    with pytest.raises(TemplateError):
        render("t.j2", {"flags": {"other": 1}}, tdir)


@pytest.mark.parametrize(
    "expr",
    [
        "''.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "flags.__init__.__globals__",
        "cycler.__init__.__globals__.os",
    ],
)
def test_sandbox_blocks_dunder_attribute_access(tdir: Path, expr: str) -> None:
    _write(tdir, "t.j2", f"ok\n{{{{ {expr} }}}}\n")
    with pytest.raises(TemplateError) as info:
        render("t.j2", {"flags": {"a": 1}}, tdir)
    assert info.value.file and info.value.file.endswith("t.j2")
    assert "unsafe" in info.value.message or "undefined" in info.value.message


@pytest.mark.parametrize("expr", ["items.append(1)", "flags.update({'a': 2})", "items.pop()"])
def test_immutable_sandbox_blocks_mutation(tdir: Path, expr: str) -> None:
    _write(tdir, "t.j2", f"{{{{ {expr} }}}}\n")
    items, flags = [1, 2], {"a": 1}
    with pytest.raises(TemplateError) as info:
        render("t.j2", {"items": items, "flags": flags}, tdir)
    assert "unsafe" in info.value.message
    assert items == [1, 2] and flags == {"a": 1}


def test_syntax_error_names_file_and_line(tdir: Path) -> None:
    _write(tdir, "t.j2", "a\nb\n{% if %}\n")
    with pytest.raises(TemplateError) as info:
        render("t.j2", {}, tdir)
    assert info.value.line == 3 and "syntax" in info.value.message


def test_missing_template_lists_searched_folders(tdir: Path) -> None:
    with pytest.raises(TemplateError) as info:
        render("nope.j2", {}, tdir)
    assert "not found" in info.value.message
    assert any(str(tdir / "templates") in line for line in info.value.context)


def test_project_template_shadows_builtin(tdir: Path) -> None:
    _write(tdir, "ort-optimize.argv.j2", "mine\n")
    assert render_argv("ort-optimize.argv.j2", {}, tdir) == ["mine"]


def test_argv_one_argument_per_line(tdir: Path) -> None:
    _write(
        tdir,
        "t.argv.j2",
        "{# a jinja comment #}\n# a comment line\n{{ tool }}\n\n   --flag\n"
        "{% if on %}\n  --on\n{% endif %}\n{{ value }}\n{{ path }}/model.onnx\n",
    )
    argv = render_argv(
        "t.argv.j2",
        {
            "tool": "/bin/cc",
            "on": True,
            "value": "x; touch pwned && echo $(id) | cat",
            "path": "/a b/c",
        },
        tdir,
    )
    assert argv == [
        "/bin/cc",
        "--flag",
        "--on",
        "x; touch pwned && echo $(id) | cat",
        "/a b/c/model.onnx",
    ]


@pytest.mark.parametrize("value", ["#not-a-comment", "  padded  ", "# x; y"])
def test_argv_values_are_kept_literally(tdir: Path, value: str) -> None:
    """A value is never taken for a comment or trimmed: that would shift the arguments after it."""
    _write(tdir, "t.argv.j2", "cc\n--name\n{{ value }}\n--out\no\n")
    assert render_argv("t.argv.j2", {"value": value}, tdir) == ["cc", "--name", value, "--out", "o"]


def test_empty_render_is_an_error(tdir: Path) -> None:
    _write(tdir, "t.argv.j2", "# nothing\n\n")
    with pytest.raises(TemplateError) as info:
        render_argv("t.argv.j2", {}, tdir)
    assert "empty command" in info.value.message


def test_config_templates_render_verbatim(tdir: Path) -> None:
    _write(tdir, "c.ini.j2", "# a real comment in the config\nlevel = {{ level }}\n")
    assert render("c.ini.j2", {"level": 3}, tdir) == "# a real comment in the config\nlevel = 3\n"
