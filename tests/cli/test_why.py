"""``rmbuild why --target`` takes a resource class, as ``compile --target`` does."""

from __future__ import annotations

from pathlib import Path

VENDOR_NPU = """\
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


def _npu_project(project) -> None:  # noqa: ANN001
    folder = project.root / "profiles" / "toolchains"
    (folder / "vendor.yaml").write_text("name: vendor\nlock: vendor.lock\n")
    (folder / "vendor.lock").write_text("# empty\n")
    project.write_profile("vendor-npu", VENDOR_NPU)
    project.write_spec(
        "name: m\nsource: {path: model, format: hf}\ntargets:\n"
        "  cpu: {profile: fake-compile}\n  vendor: {profile: vendor-npu}\n"
    )


def test_why_takes_a_resource_class(project, data_dir: Path, cli) -> None:  # noqa: ANN001
    _npu_project(project)
    r = cli("why", str(project.spec), "--target", "npu")
    assert r.code == 0, r.err  # was exit 3: "no target named 'npu'"
    assert "npu: a resource class; its targets: vendor" in r.out
    assert "m:vendor (vendor-npu): blocked" in r.out
    assert "toolchain vendor: not installed -> rmbuild toolchain install vendor" in r.out
    data = cli("why", str(project.spec), "--target", "npu", "--json").json()
    assert data["classes"] == ["npu"]
    assert [t["target"] for t in data["targets"]] == ["vendor"]
    assert data["targets"][0]["stages"][0]["action"] == "blocked"


def test_why_a_target_name_is_as_before(project, data_dir: Path, cli) -> None:  # noqa: ANN001
    _npu_project(project)
    data = cli("why", str(project.spec), "--target", "cpu", "--json").json()
    assert data["target"] == "cpu" and data["stages"][0]["action"] == "build"
    r = cli("why", str(project.spec), "--target", "npx")
    assert r.code != 0 and "did you mean 'npu'" in r.err
