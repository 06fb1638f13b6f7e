"""The action key: one test per input that must change it, and the ones that must not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rmbuild import keys
from rmbuild.build import action_key, plan, source_digest
from rmbuild.declare.spec import load_model_spec
from rmbuild.keys import KEY_VERSION, ActionKey, canonical_json, tree_digest

BASE = ActionKey(
    inputs={"model": "a" * 64},
    stage="compile",
    backend="onnxruntime",
    profile="onnxruntime-cpu",
    flags={"opt_level": "extended"},
    argv=["<python>", "<script:ort_optimize>", "--input", "<input:model>/model.onnx"],
    configs={},
    tool={"name": "ort-optimize", "package": "onnxruntime", "version": "1.32.0"},
    toolchain={"name": "onnxruntime", "python": "3.11.7", "packages": {"onnxruntime": "1.32.0"}},
    fingerprint={},
    env={},
)

# Pinned: if this changes, every user's cache is invalidated. Bump KEY_VERSION on purpose and
# update the digest in the same commit.
# 3: key_env values enter as digests (the key dict is stored and shown; a value may be a token).
GOLDEN = "49e996f78f3af7e0c2cabf3fafb2add20f5fb0da4fa9931f94f0836a31d3031a"


def test_golden_digest_is_pinned() -> None:
    assert KEY_VERSION == 3
    assert BASE.compute() == GOLDEN


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert tree_digest({"x": "1", "y": "2"}) == tree_digest({"y": "2", "x": "1"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("inputs", {"model": "b" * 64}),  # different weights (ONNX Runtime #6455)
        ("stage", "export"),
        ("backend", "openvino"),
        ("profile", "onnxruntime-cpu-2"),
        ("flags", {"opt_level": "all"}),
        ("argv", [*BASE.argv, "--extra"]),
        ("configs", {"build.cfg": "x=1"}),
        ("tool", {**BASE.tool, "version": "1.33.0"}),  # compiler upgrade (vllm-rbln PR#653)
        ("tool", {**BASE.tool, "script_sha256": "f" * 64}),
        ("toolchain", {**BASE.toolchain, "packages": {"onnxruntime": "1.31.0"}}),
        ("toolchain", {**BASE.toolchain, "python": "3.12.1"}),
        ("fingerprint", {"cpu_isa": ["avx2"]}),
        ("env", {"OMP_NUM_THREADS": "4"}),  # flags hidden in env (optimum-neuron #457)
        ("carry", ["tokenizer.json"]),
    ],
)
def test_changing_an_input_changes_the_key(field: str, value: object) -> None:
    changed = dataclasses.replace(BASE, **{field: value})
    assert changed.compute() != BASE.compute()


def test_key_version_salts_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = BASE.compute()
    monkeypatch.setattr(keys, "KEY_VERSION", KEY_VERSION + 1)
    assert BASE.compute() != before


# --------------------------------------------------------------------------- through the planner


def _project(tmp_path: Path, flags: str = "", weights: bytes = b"w" * 64) -> Path:
    model = tmp_path / "m" / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(weights)
    spec = tmp_path / "m" / "model.yaml"
    spec.write_text(
        "name: demo\nsource: {path: model}\n"
        f"targets:\n  cpu:\n    profile: onnxruntime-cpu\n    flags: {{{flags}}}\n"
    )
    return spec


def _keys(spec_path: Path, store) -> list[str]:  # noqa: ANN001
    spec = load_model_spec(spec_path)
    chain = plan(spec, "cpu")
    export = action_key(chain[0], {"model": source_digest(spec, store)}, spec.root)
    # The compile stage chains the export's output digest; a fixed stand-in is enough here.
    compile_ = action_key(chain[1], {"model": "e" * 64}, spec.root)
    return [export.compute(), compile_.compute()]


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    from artifact_store import Store

    with Store(tmp_path / "store") as s:
        yield s


def test_weights_content_changes_the_export_key(tmp_path: Path, store) -> None:  # noqa: ANN001
    a = _keys(_project(tmp_path / "a", weights=b"1" * 64), store)
    b = _keys(_project(tmp_path / "b", weights=b"2" * 64), store)
    assert a[0] != b[0]


def test_paths_and_folder_names_do_not_change_keys(tmp_path: Path, store) -> None:  # noqa: ANN001
    a = _keys(_project(tmp_path / "one"), store)
    b = _keys(_project(tmp_path / "another" / "place"), store)
    assert a == b


def test_keyed_flag_changes_compile_key(tmp_path: Path, store) -> None:  # noqa: ANN001
    a = _keys(_project(tmp_path / "a", "opt_level: extended"), store)
    b = _keys(_project(tmp_path / "b", "opt_level: basic"), store)
    assert a[0] == b[0] and a[1] != b[1]


def test_runtime_only_flags_do_not_change_keys(tmp_path: Path, store) -> None:  # noqa: ANN001
    a = _keys(_project(tmp_path / "a", "threads: 1, intra_op_threads: 1"), store)
    b = _keys(_project(tmp_path / "b", "threads: 8, intra_op_threads: 2"), store)
    assert a == b


def test_level_all_keys_on_cpu_isa(tmp_path: Path, store, monkeypatch) -> None:  # noqa: ANN001
    from rmbuild.host import hostinfo

    spec = _project(tmp_path / "a", "opt_level: all")
    info = dict(hostinfo.cpu_info())
    monkeypatch.setattr(
        "rmbuild.backends.onnxruntime.plugin.cpu_info", lambda: {**info, "isa": ["avx2"]}
    )
    a = _keys(spec, store)
    monkeypatch.setattr(
        "rmbuild.backends.onnxruntime.plugin.cpu_info", lambda: {**info, "isa": ["avx2", "avx512f"]}
    )
    b = _keys(spec, store)
    assert a[0] == b[0] and a[1] != b[1]


def test_toolchain_upgrade_changes_key(tmp_path: Path, store, monkeypatch) -> None:  # noqa: ANN001
    from rmbuild.toolrun import toolchains

    spec = _project(tmp_path / "a")
    a = _keys(spec, store)
    real = toolchains.Toolchain.identity

    def upgraded(self):  # noqa: ANN001, ANN202
        ident = real(self)
        if self.name != "onnxruntime":
            return ident
        return {**ident, "packages": {**ident["packages"], "onnxruntime": "99.0.0"}}

    monkeypatch.setattr(toolchains.Toolchain, "identity", upgraded)
    b = _keys(spec, store)
    assert a[0] == b[0]  # the exporter's toolchain does not contain onnxruntime
    assert a[1] != b[1]


def test_allow_listed_env_enters_key(tmp_path: Path, store, monkeypatch) -> None:  # noqa: ANN001
    profiles = tmp_path / "a" / "m" / "profiles"
    profiles.mkdir(parents=True)
    repo_profile = Path(__file__).resolve().parents[1] / "profiles" / "onnxruntime-cpu.yaml"
    (profiles / "onnxruntime-cpu.yaml").write_text(
        repo_profile.read_text() + "key_env: [RMBUILD_TEST_KNOB]\n"
    )
    spec = _project(tmp_path / "a")
    monkeypatch.setenv("RMBUILD_TEST_KNOB", "1")
    a = _keys(spec, store)
    monkeypatch.setenv("RMBUILD_TEST_KNOB", "2")
    monkeypatch.setenv("SOME_OTHER_VAR", "x")
    b = _keys(spec, store)
    assert a[1] != b[1]
    monkeypatch.setenv("SOME_OTHER_VAR", "y")
    assert _keys(spec, store) == b


def test_a_key_env_token_is_stored_and_shown_only_as_a_digest(project, cli, monkeypatch) -> None:  # noqa: ANN001
    # The key's dict lands in the index (metadata.action_key), in `show --json`, in the plan
    # cache and in `why`: none of them may hold a token a key_env variable carries.
    import hashlib

    token = "hf_" + "Zq8wXv3LmN7pRt2Ks9Yb4Jd6Fh1Gc5"
    toolchain = project.root / "profiles" / "toolchains" / "fake.yaml"
    toolchain.write_text(toolchain.read_text() + "key_env: [HF_TOKEN]\n")
    monkeypatch.setenv("HF_TOKEN", token)
    built = cli("compile", str(project.spec), "--target", "fake", "--json")
    assert built.code == 0, built.err
    shown = cli("show", "tiny:fake", "--json")
    assert shown.code == 0, shown.err
    assert token not in shown.out
    digest = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert digest in shown.out
    for path in project.store.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    monkeypatch.setenv("HF_TOKEN", token + "-rotated")
    why = cli("why", str(project.spec), "-t", "fake")
    assert token not in why.out + why.err
    assert "env HF_TOKEN: sha256:" in why.out, why.out
