"""YAML loading with line numbers, and validation errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from rmbuild.errors import SpecError
from rmbuild.yamlio import line_of, load_yaml, validate

DOC = """\
# a comment
name: tiny
targets:
  npu:
    flags:
      opt_level: 3
      dims: [1, 2]
  cpu:
    profile: x
"""


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opt_level: int = 0
    dims: list[int] = []


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    targets: dict[str, dict[str, _Inner | str]] = {}


def _load(tmp_path: Path, text: str):  # noqa: ANN202
    path = tmp_path / "doc.yaml"
    path.write_text(text, encoding="utf-8")
    return path, *load_yaml(path)


def test_every_location_has_its_line(tmp_path: Path) -> None:
    _, data, lines = _load(tmp_path, DOC)
    assert data["targets"]["npu"]["flags"]["opt_level"] == 3
    assert lines[("name",)] == 2
    assert lines[("targets", "npu", "flags", "opt_level")] == 6
    assert lines[("targets", "npu", "flags", "dims", 1)] == 7
    assert lines[("targets", "cpu", "profile")] == 9


def test_line_of_falls_back_to_the_deepest_known_parent(tmp_path: Path) -> None:
    _, _, lines = _load(tmp_path, DOC)
    # 'flags:' is on line 5 and its first entry on 6; either points the user at the block.
    assert line_of(lines, ("targets", "npu", "flags", "missing", "deeper")) in (5, 6)
    assert line_of(lines, ("targets", "cpu", "nope")) in (8, 9)
    assert line_of({}, ("a",)) is None


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3),  # unclosed flow sequence
        ("a: 1\n  b: 2\n", 2),  # bad indentation
        ("a: 1\na: {x: 1\n", 3),  # unclosed mapping at end of input
        ("a: 'unterminated\nb: 2\n", 3),
        ("a:\n\t- tab\n", 2),
    ],
)
def test_malformed_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(SpecError) as info:
        _load(tmp_path, text)
    err = info.value
    assert err.line == line, err.message
    assert err.message.startswith(f"{tmp_path / 'doc.yaml'}:{line}: malformed YAML")


def test_empty_file_is_empty_data(tmp_path: Path) -> None:
    _, data, lines = _load(tmp_path, "# only a comment\n")
    assert data == {} and lines == {}


def test_unsafe_tags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        _load(tmp_path, "a: !!python/object/apply:os.system ['touch pwned']\n")
    assert not Path("pwned").exists()


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_yaml(tmp_path / "nope.yaml")
    assert "file not found" in info.value.message and "nope.yaml" in info.value.message
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_yaml(bad)
    assert "cannot read" in info.value.message


def test_unknown_field_names_field_and_line(tmp_path: Path) -> None:
    path, data, lines = _load(tmp_path, DOC.replace("      dims", "      dimz"))
    with pytest.raises(SpecError) as info:
        validate(_Doc, data, path, lines)
    err = info.value
    assert err.line == 7 and err.field is not None and err.field.endswith("dimz")
    assert "unknown field" in err.message


def test_wrong_type_names_field_line_and_input(tmp_path: Path) -> None:
    path, data, lines = _load(tmp_path, DOC.replace("opt_level: 3", "opt_level: high"))
    with pytest.raises(SpecError) as info:
        validate(_Doc, data, path, lines)
    err = info.value
    assert err.line == 6 and "opt_level" in (err.field or "")
    assert "'high'" in err.message


def test_list_item_error_names_its_line(tmp_path: Path) -> None:
    text = DOC.replace("dims: [1, 2]", "dims:\n        - 1\n        - x")
    path, data, lines = _load(tmp_path, text)
    with pytest.raises(SpecError) as info:
        validate(_Doc, data, path, lines)
    assert info.value.line == 9


def test_missing_field_and_count_of_other_problems(tmp_path: Path) -> None:
    path, data, lines = _load(tmp_path, "targets: 3\n")
    with pytest.raises(SpecError) as info:
        validate(_Doc, data, path, lines)
    assert info.value.field == "name" and "missing" in info.value.message.lower()
    assert info.value.context == ["and 1 more problem(s) in the same file"]


def test_unknown_field_comes_first_with_a_did_you_mean(tmp_path: Path) -> None:
    """`profil:` made 'profile' missing; the typo is what explains it."""
    from rmbuild.declare.spec import ModelSpec

    text = "name: t\nsource:\n  path: m\ntargets:\n  cpu:\n    profil: onnxruntime-cpu\n"
    path, data, lines = _load(tmp_path, text)
    with pytest.raises(SpecError) as info:
        validate(ModelSpec, data, path, lines)
    err = info.value
    assert err.field == "targets.cpu.profil" and err.line == 6
    assert err.message.endswith("unknown field (did you mean 'profile'?)")
    assert err.context == ["and 1 more problem(s) in the same file"]


def test_unknown_top_level_field_suggests_and_far_ones_do_not(tmp_path: Path) -> None:
    from rmbuild.declare.spec import ModelSpec

    text = "name: t\nsorce:\n  path: m\ntargets:\n  cpu: {profile: p}\nzzz: 1\n"
    path, data, lines = _load(tmp_path, text)
    with pytest.raises(SpecError) as info:
        validate(ModelSpec, data, path, lines)
    assert info.value.field == "sorce" and "did you mean 'source'?" in info.value.message
    path, data, lines = _load(tmp_path, text.replace("sorce", "source"))
    with pytest.raises(SpecError) as info:
        validate(ModelSpec, data, path, lines)
    assert info.value.field == "zzz" and info.value.message.endswith("unknown field")


def test_unknown_field_inside_a_union_member_suggests(tmp_path: Path) -> None:
    path, data, lines = _load(tmp_path, DOC.replace("opt_level", "opt_levle"))
    with pytest.raises(SpecError) as info:
        validate(_Doc, data, path, lines)
    assert "did you mean 'opt_level'?" in info.value.message


# --------------------------------------------------------------------- hostile YAML

# Each case must be refused in well under a second by construction: size before parsing, depth
# and alias expansion while composing. The timeout is a guard against a hang, not a benchmark.


def _billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefghi", "bcdefghij", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("text", "says", "line"),
    [
        (_billion_laughs(), "aliases expand to more than 10000 nodes", 5),
        ("a: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested more than 64 levels deep", 1),
        ("a:\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 100)), "64 levels", 64),
        ("a: &a [1, *a]\n", "recursive alias", 1),
    ],
    ids=["billion-laughs", "brackets", "indented", "recursive-alias"],
)
def test_hostile_yaml_is_refused(tmp_path: Path, text: str, says: str, line: int) -> None:
    with pytest.raises(SpecError) as info:
        _load(tmp_path, text)
    err = info.value
    assert says in err.message and err.line == line
    assert err.message.startswith(f"{tmp_path / 'doc.yaml'}:{line}: ")
    assert err.exit_code == 3


@pytest.mark.timeout(20)
def test_a_file_over_one_mib_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" * 2_000_000)  # 10 MB: took 25 s to reject when parsed
    with pytest.raises(SpecError) as info:
        load_yaml(path)
    assert info.value.message == (
        f"{path}: file is larger than 1 MiB; a spec or profile is a page of YAML"
    )


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    text = "base: &f {opt_level: 3}\nx: *f\ny: {<<: *f, dims: [1]}\n"
    _, data, lines = _load(tmp_path, text)
    assert data["x"] == {"opt_level": 3} and data["y"] == {"opt_level": 3, "dims": [1]}
    assert lines[("y", "dims")] == 3


@pytest.mark.timeout(20)
def test_hostile_spec_through_the_cli(tmp_path: Path, store_dir: Path, cli) -> None:  # noqa: ANN001
    spec = tmp_path / "model.yaml"
    spec.write_text(_billion_laughs())
    r = cli("compile", str(spec))
    r.assert_failure(3)
    assert f"{spec}:5: aliases expand to more than" in r.err


def test_union_member_names_do_not_leak_into_the_field(tmp_path: Path) -> None:
    """``str | int | ...`` fields: pydantic appends 'str', 'int' to the path; they are not keys."""
    from rmbuild.declare.spec import ModelSpec

    text = (
        "name: t\nsource:\n  path: m\ntargets:\n  a:\n    profile: p\n    flags:\n"
        "      opt_level: {x: 1}\n"
    )
    path, data, lines = _load(tmp_path, text)
    with pytest.raises(SpecError) as info:
        validate(ModelSpec, data, path, lines)
    err = info.value
    assert err.field == "targets.a.flags.opt_level" and err.line == 8
    assert "wrong type: expected one of str, int, float, bool" in err.message
    assert "{'x': 1}" in err.message
    assert err.context == []  # one problem, not one per union member


def test_duplicate_keys_are_an_error_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: x\ntargets:\n  a: {profile: p}\n  a: {profile: q}\n")
    with pytest.raises(SpecError, match=r"m\.yaml:4: malformed YAML: duplicate key 'a'"):
        load_yaml(path)
