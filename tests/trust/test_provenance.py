"""Every build records a SLSA provenance v1 statement; `show --provenance` prints it."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from rmbuild.trust import provenance

if TYPE_CHECKING:
    from conftest import Project

EXIT_NOT_FOUND = 5


def _deps(statement: dict) -> dict[str, dict]:
    return {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}


def test_a_build_records_slsa_provenance_of_its_inputs_tools_and_log(
    project: Project, cli, build_artifact
) -> None:  # noqa: ANN001
    artifact = build_artifact(level=2)
    shown = cli("show", artifact, "--json").json()
    printed = cli("show", artifact, "--provenance")
    assert printed.code == 0, printed.err
    import json

    statement = json.loads(printed.out)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    # Subjects: the artifact's files, as the manifest has them.
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {
        rel: f["digest"] for rel, f in shown["files"].items()
    }
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    external = definition["externalParameters"]
    spec_digest = hashlib.sha256(project.spec.read_bytes()).hexdigest()
    assert external["modelSpec"] == {
        "path": str(project.spec),
        "digest": {"sha256": spec_digest},
    }
    assert external["target"] == "fake" and external["profile"] == "fake-compile"
    assert external["flags"]["level"] == 2 and "threads" in external["flags"]
    assert external["source"] == {"format": "hf", "path": "model"}
    assert definition["internalParameters"]["actionKey"] == artifact
    deps = _deps(statement)
    weights = (project.model / "weights.bin").read_bytes()
    assert deps["source/weights.bin"]["digest"] == {"sha256": hashlib.sha256(weights).hexdigest()}
    assert "source/config.json" in deps
    toolchain = deps["toolchain:fake"]
    assert len(toolchain["digest"]["sha256"]) == 64
    assert toolchain["annotations"]["digestOf"] == "identity"  # no lock: its identity's digest
    assert "tool:" + str(project.fake) in deps
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == provenance.BUILDER_ID
    assert run["builder"]["version"]["rmbuild"]
    log_digest = shown["log"].rsplit("/", 2)
    assert run["byproducts"][0]["name"] == "log"
    assert run["byproducts"][0]["digest"]["sha256"] == log_digest[-2] + log_digest[-1]
    started = datetime.fromisoformat(run["metadata"]["startedOn"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(run["metadata"]["finishedOn"].replace("Z", "+00:00"))
    assert started <= finished
    # The statement is a blob the row names, so push and pull carry it.
    from artifact_store import Store

    with Store(project.store) as store:
        assert json.loads(store.read_bytes(shown["provenance"])) == statement


def test_a_later_stage_names_the_upstream_artifact_it_was_built_from(project: Project, cli) -> None:  # noqa: ANN001
    post = project.fake_profile().replace("name: fake-compile", "name: fake-post")
    post = post.replace("input_format: hf", "input_format: fake-bin")
    post = post.replace("stage: compile", "stage: compile\ndepends_on: fake-compile")
    project.write_profile("fake-post", post)
    project.write_spec(project.spec_text(profile="fake-post"))
    built = cli("compile", str(project.spec), "--target", "fake", "--json")
    assert built.code == 0, built.err
    artifact = built.json()[0]["artifact"]
    shown = cli("show", artifact, "--json").json()
    (parent,) = shown["parents"]
    import json

    statement = json.loads(cli("show", artifact, "--provenance").out)
    deps = _deps(statement)
    upstream = deps[f"artifact:{parent}"]
    assert upstream["digest"] == {"sha256": cli("show", parent, "--json").json()["manifest"]}
    assert not [name for name in deps if name.startswith("source/")]


def test_an_artifact_without_provenance_says_so(project: Project, cli, build_artifact) -> None:  # noqa: ANN001
    from artifact_store import Store

    artifact = build_artifact()
    with Store(project.store) as store:
        record = store.get(artifact)
        assert record is not None
        meta = {k: v for k, v in record.metadata.items() if k != "provenance"}
        meta["blobs"] = [meta["log"]]
        manifest = store.get_manifest(record.manifest_digest)
        store.commit(
            artifact, manifest, model="tiny", target="fake", backend="onnxruntime",
            metadata=meta, replace=True,
        )  # fmt: skip
    missing = cli("show", artifact, "--provenance")
    missing.assert_failure(EXIT_NOT_FOUND)
    assert "has no provenance statement" in missing.err
