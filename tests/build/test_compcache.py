"""The compiler-cache artifact: a vendor compiler's cache kept in the store under
the compiler's identity, fed to each build and updated from it; never in a key."""

from __future__ import annotations

import json

PROFILE = """\
name: cached-compile
backend: onnxruntime
stage: compile
input_format: hf
output_format: cached-bin
toolchain: fake
tool:
  name: python
template: cached.argv.j2
flags:
  level: 1
  cache_dir: null
runtime_flags: [cache_dir]
compiler_cache: cache_dir
outputs: [model.bin]
"""

# A stand-in compiler with a cache: it counts the entries it finds, adds one, and records the
# count in its output (so a test can see what it was fed).
CODE = (
    "import os, sys; d = sys.argv[1]; n = len(os.listdir(d)); "
    "open(os.path.join(d, 'k%d' % n), 'w').write('x'); "
    "open(sys.argv[2] + '/model.bin', 'w').write(str(n))"
)
TEMPLATE = (
    """\
{{ tool }}
-c
"""
    + CODE
    + """
{% if flags.cache_dir %}
{{ flags.cache_dir }}
{% else %}
{{ workdir }}/compiler-cache
{% endif %}
{{ output }}
"""
)


def _spec(project, level: int) -> None:  # noqa: ANN001
    project.write_spec(
        "name: m\nsource: {path: model, format: hf}\ntargets:\n"
        f"  t: {{profile: cached-compile, flags: {{level: {level}}}}}\n"
    )


def _seen(cli, project) -> tuple[str, int]:  # noqa: ANN001
    r = cli("compile", str(project.spec), "-t", "t", "--json")
    assert r.code == 0, r.err
    key = json.loads(r.out)[0]["artifact"]
    from artifact_store import Store

    with Store(project.store) as store:
        folder = store.materialize(key)
    return key, int((folder / "model.bin").read_text())


def test_a_second_build_is_fed_the_cache_of_the_first(project, cli) -> None:  # noqa: ANN001
    project.write_profile("cached-compile", PROFILE)
    project.write_template("cached.argv.j2", TEMPLATE)
    _spec(project, 1)
    first, fed = _seen(cli, project)
    assert fed == 0  # cold: nothing cached yet
    _spec(project, 2)  # another key (a small change): the cache of the first build is fed
    second, fed = _seen(cli, project)
    assert second != first and fed == 1
    _spec(project, 3)
    assert _seen(cli, project)[1] == 2  # and updated from each build
    rows = json.loads(cli("ls", "--all", "--json").out)  # internal: listed with --all
    caches = [row for row in rows if row.get("target") == "compiler-cache"]
    assert len(caches) == 1  # one artifact per compiler identity, replaced in place


def test_a_user_cache_dir_turns_it_off(project, cli, tmp_path) -> None:  # noqa: ANN001
    project.write_profile("cached-compile", PROFILE)
    project.write_template("cached.argv.j2", TEMPLATE)
    mine = tmp_path / "mine"
    mine.mkdir()
    project.write_spec(
        "name: m\nsource: {path: model, format: hf}\ntargets:\n"
        f"  t: {{profile: cached-compile, flags: {{cache_dir: {json.dumps(str(mine))}}}}}\n"
    )
    r = cli("compile", str(project.spec), "-t", "t", "--json")
    assert r.code == 0, r.err
    assert [p.name for p in mine.iterdir()] == ["k0"]
    rows = json.loads(cli("ls", "--all", "--json").out)
    assert not [row for row in rows if row.get("target") == "compiler-cache"]
