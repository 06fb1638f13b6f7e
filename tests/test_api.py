"""The runtime's limits and the Python API on the three CPU backends (ONNX Runtime, OpenVINO,
IREE), with two tiny random-weight models made here and built once for the module:

* ``gpt2``: a learned position table of 32 rows (``n_positions``), BOS id 1. Past the table
  the runtimes used to give wrong text with exit 0 (OpenVINO, IREE) or an internal error (ONNX
  Runtime); now a request past it is refused before the model runs (exit 6), and
  ``--max-model-len`` cannot raise it.
* ``llama``: rotary positions, ``max_position_embeddings`` 16 and no BOS token. With
  ``max_model_len`` raised it runs past 16 positions and gives PyTorch's tokens.

Both tokenizers add no BOS, so an empty prompt encodes to no tokens: GPT-2 starts from its
BOS, the Llama is refused with exit 2 (it used to reach the backends as a zero-length input).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from tests.runtime.test_architectures import (
    ARCHS,
    PROMPT_IDS,
    STEPS,
    TARGETS,
    _make_model,
    _needs_toolchains,
    _spec,
    _torch_greedy,
)

pytestmark = pytest.mark.slow

MODELS = {
    "gpt2": {**ARCHS["gpt2"], "n_positions": 32},
    "llama": {**ARCHS["llama"], "max_position_embeddings": 16, "bos_token_id": None},
}
EXIT_USAGE, EXIT_INCOMPATIBLE = 2, 6


def _without_bos(model_dir: Path) -> None:
    """Drop the tokenizer's BOS template (GPT-2's tokenizer adds none either)."""
    path = model_dir / "tokenizer.json"
    data = json.loads(path.read_text())
    data["post_processor"] = None
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Both models, their artifacts on the three backends (one store), llama's torch tokens."""
    _needs_toolchains()
    from artifact_store import Store
    from rmbuild.build import compile_spec

    root = tmp_path_factory.mktemp("api")
    keys: dict[str, dict[str, str]] = {}
    reference: list[int] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RMBUILD_CONFIG_DIR", str(root / "config"))
        store = Store(root / "store")
        for name, overrides in MODELS.items():
            model_dir = _make_model(name, overrides, root / name / "model")
            _without_bos(model_dir)
            if name == "llama":
                reference = _torch_greedy(model_dir)  # PROMPT_IDS + STEPS: 22 positions > 16
            results = compile_spec(_spec(root / name, model_dir, TARGETS), store=store)
            keys[name] = {r.target: r.artifact.key for r in results}
        store.close()
    return root / "store", keys, reference


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_request_past_a_learned_position_table_is_refused_before_it_runs(
    built,  # noqa: ANN001
    target: str,
    cli,  # noqa: ANN001
) -> None:
    store, keys, _ = built
    key = keys["gpt2"][target]
    prompt = "The future of AI is " * 3
    args = ("--store", str(store), "run", "-a", key, "-p", prompt)
    meta = cli(*args, "-n", "1", "--json")
    assert meta.code == 0, meta.err
    report = meta.json()
    assert report["max_model_len"] == 32
    fits = 32 - report["prompt_tokens"]
    assert fits > 0
    r = cli(*args, "-n", str(fits + 1))
    r.assert_failure(EXIT_INCOMPATIBLE)
    assert r.out == ""  # refused before the prompt is echoed or the model runs
    assert f"plus max tokens {fits + 1} is 33 tokens" in r.err
    assert "limit of 32 (n_positions in config.json)" in r.err
    assert f"--max-tokens {fits}" in r.err
    ok = cli(*args, "-n", str(fits), "--json")
    assert ok.code == 0, ok.err
    raised = cli(*args, "-n", "1", "--max-model-len", "64")
    raised.assert_failure(EXIT_INCOMPATIBLE)
    assert "gpt2 learns a table of 32 positions" in raised.err


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_rotary_model_runs_past_its_declared_length_as_pytorch_does(
    built,  # noqa: ANN001
    target: str,
) -> None:
    import rmbuild
    from rmbuild.errors import ContextTooLong

    store, keys, reference = built
    with rmbuild.load(keys["llama"][target], store=store) as session:
        assert session.max_model_len == 16
        with pytest.raises(ContextTooLong):
            session.generate_ids(PROMPT_IDS, STEPS)
    with rmbuild.load(keys["llama"][target], store=str(store), max_model_len=64) as session:
        assert session.max_model_len == 64
        session.eos_token_ids = set()  # compare all steps, like the reference
        assert list(session.generate_ids(PROMPT_IDS, STEPS)) == reference


@pytest.mark.parametrize("target", list(TARGETS))
def test_an_empty_prompt_starts_from_bos_or_is_refused(
    built,  # noqa: ANN001
    target: str,
    cli,  # noqa: ANN001
) -> None:
    store, keys, _ = built
    base = ("--store", str(store), "run", "-p", "", "-n", "3", "--json")
    gpt2 = cli(*base, "-a", keys["gpt2"][target])
    assert gpt2.code == 0, gpt2.err
    assert gpt2.json()["prompt_tokens"] == 1  # the BOS
    llama = cli(*base, "-a", keys["llama"][target])
    llama.assert_failure(EXIT_USAGE)
    assert "encodes to no tokens" in llama.err and "bos_token_id" in llama.err


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_closed_session_raises_session_closed(built, target: str) -> None:  # noqa: ANN001
    import rmbuild
    from rmbuild.errors import SessionClosed

    store, keys, _ = built
    session = rmbuild.load(keys["gpt2"][target], store=Path(store))
    tokens = session.generate_ids([1, 57, 300], 4)
    next(tokens)
    session.close()
    import numpy as np

    for call in (
        lambda: session.generate("The future"),
        lambda: list(session.stream("The future")),
        lambda: next(tokens),
        # A caller holding the decoder step itself (a server's engine) gets the same error.
        lambda: session.step_fn.step(np.asarray([1], dtype=np.int64)),
    ):
        with pytest.raises(SessionClosed, match="is closed"):
            call()


def test_load_documents_its_arguments() -> None:
    import rmbuild

    params = inspect.signature(rmbuild.load).parameters
    assert {"store", "verify", "device", "max_model_len", "options"} <= set(params)
    doc = inspect.getdoc(rmbuild.load) or ""
    for word in ("store:", "str", "pathlib.Path", "verify:", "device:", "max_model_len:"):
        assert word in doc
    assert "**options:" in doc and "intra_op_threads" in doc
