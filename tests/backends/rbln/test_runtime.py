"""The RBLN session's refusals are exit 6 like every other backend's load refusal (a worker
that cannot load the artifact, a temperature optimum-rbln's greedy generate cannot honour), and
its compiled max_seq_len bounds the context limit. A stand-in worker script replaces the
toolchain's Python; the real worker class, session and loader logic run."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rmbuild.backends.rbln import probe
from rmbuild.backends.rbln import runtime as rbln_runtime
from rmbuild.errors import EXIT_INCOMPATIBLE, ArtifactUnloadable, IncompatibleArtifact

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "examples" / "tiny-llama" / "model"


def _artifact(tmp_path: Path, max_seq_len: int = 64) -> Path:
    folder = tmp_path / "artifact"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copy(TINY / name, folder / name)
    (folder / "rbln_config.json").write_text(json.dumps({"max_seq_len": max_seq_len}))
    return folder


def test_a_worker_that_cannot_load_is_exit_6_with_the_sdks_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        "import json, sys\n"
        "print('rebel: RBLN device 0 is held by another process', file=sys.stderr)\n"
        "print(json.dumps({'error': 'Failed to create RBLN runtime'}), flush=True)\n"
    )
    monkeypatch.setattr(probe, "RUN_SCRIPT", script)
    monkeypatch.setattr(probe, "tool_env", lambda tc: dict(os.environ))
    tc: Any = SimpleNamespace(python_path=sys.executable)
    with pytest.raises(ArtifactUnloadable) as err:
        rbln_runtime.RBLNWorker(tc, _artifact(tmp_path), [0])
    e = err.value
    assert e.exit_code == EXIT_INCOMPATIBLE
    assert "could not load the artifact on RBLN device(s) [0]" in e.message
    assert "Failed to create RBLN runtime" in e.message
    assert "  rebel: RBLN device 0 is held by another process" in e.context
    log = Path(e.context[-1].removeprefix("full log: "))
    assert "held by another process" in log.read_text()  # kept, since the error names it
    log.unlink()


class FakeWorker:
    """The worker's interface without a process: greedy ids 5, 6, 7..."""

    def __init__(self, tc: Any, artifact_dir: Path, device_ids: list[int]) -> None:
        self.artifact_dir = artifact_dir
        self.asked: list[tuple[list[int], int]] = []

    compiled_limit = rbln_runtime.RBLNWorker.compiled_limit

    def generate(self, ids: list[int], max_new_tokens: int) -> list[int]:
        self.asked.append((ids, max_new_tokens))
        return list(range(5, 5 + max_new_tokens))

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    pytest.importorskip("numpy")
    pytest.importorskip("tokenizers")
    from rmbuild.runtime import limits
    from rmbuild.runtime.session import read_json

    monkeypatch.setattr(rbln_runtime, "RBLNWorker", FakeWorker)
    folder = _artifact(tmp_path, max_seq_len=64)
    made = rbln_runtime.make_session(None, folder, [0], {"backend": "rbln"})  # type: ignore[arg-type]
    made.context_limit = limits.for_artifact(read_json(folder / "config.json"), {}, made.step_fn)
    return made


def test_sampling_is_refused_with_exit_6_before_the_worker_runs(session) -> None:  # noqa: ANN001
    with pytest.raises(IncompatibleArtifact) as err:
        session.stream("hello", 4, temperature=0.7)
    assert err.value.exit_code == EXIT_INCOMPATIBLE
    assert "generates greedily" in err.value.message and "0.7" in err.value.message
    assert session.step_fn.asked == []
    assert list(session.generate_ids([1, 9], 3)) == [5, 6, 7]


def test_the_compiled_max_seq_len_bounds_the_context(session) -> None:  # noqa: ANN001
    from rmbuild.errors import ContextTooLong

    # config.json declares 256 positions; the graphs were compiled for 64.
    assert session.max_model_len == 64
    assert session.context_limit.source == "max_seq_len in rbln_config.json"
    with pytest.raises(ContextTooLong) as err:
        session.generate_ids([1] * 60, 5)
    assert "at most 4 new token(s)" in str(err.value.hint)
    assert session.step_fn.asked == []
