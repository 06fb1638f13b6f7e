"""Resource classes as targets: what --target npu resolves to, what is skipped and
why, exit 7 with install commands when nothing can be built, and --explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmbuild.declare.spec import load_model_spec
from rmbuild.errors import BackendUnavailable, SpecError
from rmbuild.planning import policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tiny-llama" / "model.yaml"

NPU_PROFILE = """\
name: vendor-npu
resource: npu
backend: onnxruntime
stage: compile
input_format: hf
output_format: npu-bin
toolchain: vendor
tool:
  name: python
template: fake.argv.j2
outputs: [model.bin]
"""


def _project_with_npu(project, toolchain: str) -> None:  # noqa: ANN001
    folder = project.root / "profiles" / "toolchains"
    (folder / "vendor.yaml").write_text(toolchain)
    (folder / "vendor.lock").write_text("# empty\n")
    project.write_profile("vendor-npu", NPU_PROFILE)
    project.write_spec(
        "name: m\nsource: {path: model, format: hf}\ntargets:\n"
        "  cpu: {profile: fake-compile}\n  vendor: {profile: vendor-npu}\n"
    )


def test_npu_with_no_npu_toolchain_exits_7_listing_candidates_and_install(
    project,
    data_dir: Path,
    cli,  # noqa: ANN001
) -> None:
    _project_with_npu(project, "name: vendor\nlock: vendor.lock\n")
    r = cli("compile", str(project.spec), "--target", "npu")
    r.assert_failure(7)
    assert "no npu target can be built here" in r.err
    assert "vendor (vendor-npu): toolchain vendor: not installed" in r.err
    assert "rmbuild toolchain install vendor" in r.err
    project.assert_empty(cli)


def test_missing_system_tool_skips_the_candidate_with_its_package(
    project,
    data_dir: Path,  # noqa: ANN001
) -> None:
    from rmbuild.toolrun import provision
    from rmbuild.toolrun.toolchains import find_toolchain

    _project_with_npu(
        project,
        "name: vendor\nlock: vendor.lock\nsystem_tools:\n  - name: aarch64-linux-gnu-gcc\n"
        "    check: [no-such-gcc-here, --version]\n    debian: gcc-aarch64-linux-gnu\n",
    )
    provision.install(find_toolchain("vendor", project.root))
    spec = load_model_spec(project.spec)
    res = policy.resolve(spec, ["npu"], strict=False, devices=[])
    (cand,) = res.candidates
    assert not cand.chosen
    assert cand.missing == [
        {
            "what": "system tool aarch64-linux-gnu-gcc not found",
            "install": "sudo apt-get install -y gcc-aarch64-linux-gnu",
        }
    ]
    with pytest.raises(BackendUnavailable) as exc:
        policy.resolve(spec, ["npu"], devices=[])
    assert "sudo apt-get install -y gcc-aarch64-linux-gnu" in (exc.value.hint or "")


def test_a_target_name_wins_over_a_class(project) -> None:  # noqa: ANN001
    # `--target cpu` on a model with a target called cpu builds that one target, as before.
    project.write_spec(
        "name: m\nsource: {path: model, format: hf}\ntargets:\n  cpu: {profile: fake-compile}\n"
    )
    res = policy.resolve(load_model_spec(project.spec), ["cpu"], devices=[])
    assert res.names == ["cpu"] and res.candidates == []


def test_misspelt_target_gets_did_you_mean_over_targets_and_classes(project) -> None:  # noqa: ANN001
    with pytest.raises(SpecError, match=r"no target named 'npx' \(did you mean 'npu'\?\)"):
        policy.resolve(load_model_spec(project.spec), ["npx"], devices=[])


def test_class_with_no_model_target_uses_builtin_defaults(project, data_dir: Path) -> None:  # noqa: ANN001
    spec = load_model_spec(project.spec)  # one target, fake (its profile serves no class)
    res = policy.resolve(spec, ["npu"], strict=False, devices=[])
    by_profile = {c.profile: c for c in res.candidates}
    assert {"furiosa-rngd", "openvino-npu"} <= set(by_profile)
    assert all(c.origin == "default" for c in res.candidates)
    rngd = by_profile["furiosa-rngd"]
    assert not rngd.chosen
    assert {
        "what": "toolchain furiosa: not installed",
        "install": "rmbuild toolchain install furiosa",
    } in rngd.missing
    # Default targets exist in the resolved spec (with the profile's default flags) only.
    assert rngd.target in res.spec.spec.targets and rngd.target not in spec.spec.targets


def test_device_presence_orders_candidates(project, data_dir: Path) -> None:  # noqa: ANN001
    spec = load_model_spec(project.spec)
    rngd = [{"class": "npu", "vendor": "furiosa", "name": "/dev/rngd0"}]
    intel = [{"class": "npu", "vendor": "intel", "name": "/dev/accel/accel0"}]
    first = policy.resolve(spec, ["npu"], strict=False, devices=rngd).candidates[0]
    assert first.backend == "furiosa" and first.device_present
    first = policy.resolve(spec, ["npu"], strict=False, devices=intel).candidates[0]
    assert first.backend == "openvino" and first.device_present


def test_explain_json_on_the_example(cli, data_dir: Path) -> None:  # noqa: ANN001
    r = cli("compile", str(EXAMPLE), "--target", "npu", "--explain", "--json")
    assert r.code == 0, r.err
    table = json.loads(r.out)
    rows = {row["target"]: row for row in table["candidates"]}
    assert set(rows) == {"rngd", "openvino-npu"}
    assert rows["rngd"]["resource"] == "npu" and rows["rngd"]["origin"] == "model.yaml"
    assert not rows["rngd"]["chosen"]  # no furiosa toolchain in this empty data dir
    installs = [gap["install"] for gap in rows["rngd"]["missing"]]
    assert installs[-1] == "rmbuild toolchain install furiosa"  # after any system tool's
    r = cli("compile", str(EXAMPLE), "--target", "npu", "--explain")
    assert r.code == 0 and "skipped" in r.out and "rmbuild toolchain install furiosa" in r.out


# ----------------------------------------------------------------------------- the fast path

FAST_NPU = """\
name: fast-npu
resource: npu
backend: onnxruntime
stage: compile
input_format: hf
output_format: fake-bin
toolchain: fake
tool:
  name: {tool}
template: fake.argv.j2
flags: {{mode: ok, lines: 0, sleep: 0, level: 1, threads: 0, counter: "", marker: "", name: ""}}
outputs: [model.bin]
"""


def _age(*roots: Path) -> None:
    """Older than the plan cache's racy window, as files are outside a test."""
    import os
    import time

    old = time.time() - 60
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in files + dirs:
                os.utime(os.path.join(folder, name), (old, old), follow_symlinks=False)
        os.utime(root, (old, old))


def test_a_class_hit_takes_the_plan_cache_fast_path(
    project,
    data_dir: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    # --target npu: one candidate builds here, the other lacks its toolchain.
    _project_with_npu(project, "name: vendor\nlock: vendor.lock\n")
    project.write_profile("fast-npu", FAST_NPU.format(tool=json.dumps(str(project.fake))))
    project.write_spec(
        "name: m\nsource: {path: model, format: hf}\ntargets:\n"
        "  fast: {profile: fast-npu}\n  vendor: {profile: vendor-npu}\n"
    )
    _age(project.root, project.fake.parent)
    first = cli("compile", str(project.spec), "--target", "npu")
    assert first.code == 0, first.err
    assert "m:fast -> " in first.out and "npu: skipping vendor (vendor-npu)" in first.err

    import rmbuild.declare.spec
    import rmbuild.planning.policy

    resolved: list[object] = []
    real = rmbuild.planning.policy.resolve
    monkeypatch.setattr(
        rmbuild.planning.policy, "resolve", lambda *a, **k: resolved.append(a) or real(*a, **k)
    )

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the full path ran")

    real_load = rmbuild.declare.spec.load_model_spec
    monkeypatch.setattr(rmbuild.declare.spec, "load_model_spec", boom)
    hit = cli("compile", str(project.spec), "--target", "npu")
    assert hit.code == 0, hit.err
    assert "m:fast -> " in hit.out and "(cached, no tool ran)" in hit.out
    # The fast path says what the class skipped, as the full path does.
    assert "npu: skipping vendor (vendor-npu): toolchain vendor: not installed" in hit.err
    assert resolved == []

    # What the decision depends on changed (here the vendor toolchain file): decided again.
    monkeypatch.setattr(rmbuild.declare.spec, "load_model_spec", real_load)
    vendor = project.root / "profiles" / "toolchains" / "vendor.yaml"
    vendor.write_text(vendor.read_text() + "# edited\n")
    _age(vendor)
    again = cli("compile", str(project.spec), "--target", "npu")
    assert again.code == 0, again.err
    assert len(resolved) == 1 and "(cached, no tool ran)" in again.out
