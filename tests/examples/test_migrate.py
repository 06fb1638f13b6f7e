"""examples/migrate: the GPU app and its rmbuild twin differ only in the import and in what
from_pretrained is given, and the twin runs on the example's artifact in an empty store."""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIGRATE = REPO / "examples" / "migrate"
# The example's README: its greedy continuation of "The future of AI is".
GREEDY = " small, fast and close to the people who use it. A model that runs on a local chip"


def _changed() -> list[str]:
    before = (MIGRATE / "gpu_app.py").read_text().splitlines()
    after = (MIGRATE / "rmbuild_app.py").read_text().splitlines()
    diff = difflib.unified_diff(before, after, lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_the_apps_differ_only_in_the_import_and_the_from_pretrained_arguments() -> None:
    assert _changed() == [
        "-from transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer, set_seed",
        "+from rmbuild.transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer, "
        "set_seed",
        '-tokenizer = AutoTokenizer.from_pretrained("examples/tiny-llama/model")',
        '-model = AutoModelForCausalLM.from_pretrained("examples/tiny-llama/model").to("cuda")',
        '+tokenizer = AutoTokenizer.from_pretrained("tiny-llama")',
        '+model = AutoModelForCausalLM.from_pretrained("tiny-llama", device="auto").to("cuda")',
    ]


def test_the_readme_shows_the_diff() -> None:
    readme = (MIGRATE / "README.md").read_text()
    for line in _changed():
        assert line in readme, line


@pytest.mark.slow
def test_the_rmbuild_app_runs_on_the_example_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("torch", "transformers", "optimum.exporters.onnx", "onnxruntime"):
        pytest.importorskip(module)
    from artifact_store import Store
    from rmbuild.build import compile_spec

    monkeypatch.setenv("RMBUILD_CONFIG_DIR", str(tmp_path / "config"))
    with Store(tmp_path / "store") as store:  # the cheapest target: the ONNX export alone
        compile_spec(REPO / "examples" / "tiny-llama" / "model.yaml", ["onnx"], store=store)
    done = subprocess.run(  # noqa: S603 - the example, run as its README says
        [sys.executable, str(MIGRATE / "rmbuild_app.py")],
        cwd=REPO,
        env={**os.environ, "RMBUILD_STORE": str(tmp_path / "store")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(GREEDY), done.stdout  # streamed by TextStreamer
    assert lines[1].startswith("Once upon a time") and lines[2].startswith("A compiler is")
    assert lines[3].startswith("The future of AI is") and len(lines) == 4
