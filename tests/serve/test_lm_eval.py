"""lm-eval's ``local-completions`` model with ``tokenizer_backend=auto`` against ``rmbuild
serve`` on loopback: its ``loglikelihood`` and ``generate_until`` calls, driven directly (no
task, no hub: ``HF_HUB_OFFLINE=1``).

lm-eval pins a ``datasets`` that needs another ``fsspec`` than the remote cache's ``s3fs``
takes, so it lives in an environment of its own; ``RMBUILD_LMEVAL_PYTHON`` names its
interpreter (``bash .ci/vllm.sh`` provisions it with the other real peers). Where it is unset
the test is skipped, saying so. The driver runs in that environment and prints JSON; the
reference is the in-process session's logits.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import Server

np = pytest.importorskip("numpy")

LMEVAL_PYTHON = os.environ.get("RMBUILD_LMEVAL_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not (LMEVAL_PYTHON and Path(LMEVAL_PYTHON).is_file()),
    reason="no lm-eval environment: RMBUILD_LMEVAL_PYTHON does not name its python "
    "(`bash .ci/vllm.sh` provisions lm-eval[api] and runs these tests)",
)

PAIRS = [
    ("The future of AI is", " small, fast and close"),
    ("Compilers are", " programs"),
    ("A model that runs on a local chip", " can answer a question"),
]
GENERATE = ("The future of AI is", {"until": ["."], "max_gen_toks": 24})

DRIVER = """
import json, sys
from lm_eval.api.instance import Instance
from lm_eval.models.openai_completions import LocalCompletionsAPI

url, pairs, generate = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
lm = LocalCompletionsAPI(
    base_url=url + "/v1/completions",
    model="tiny-chat",
    tokenizer_backend="auto",
    tokenized_requests=True,
    max_length=256,
    num_concurrent=1,
    max_retries=1,
)
ll = lm.loglikelihood(
    [Instance("loglikelihood", {}, tuple(p), i) for i, p in enumerate(pairs)],
    disable_tqdm=True,
)
gen = lm.generate_until(
    [Instance("generate_until", {}, (generate[0], generate[1]), 0)], disable_tqdm=True
)
print(json.dumps({
    "backend": type(lm.tokenizer).__name__,
    "loglikelihood": [[float(v), bool(g)] for v, g in ll],
    "generate_until": gen,
}))
"""


def _drive(server: Server, tmp_path: Path) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",  # no hub: the tokenizer is the server's (/tokenize)
        "HF_DATASETS_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    done = subprocess.run(
        [LMEVAL_PYTHON, "-c", DRIVER, server.url, json.dumps(PAIRS), json.dumps(GENERATE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reference(session: Any, context: str, continuation: str) -> tuple[float, bool]:
    """log P(continuation | context) and whether it is the greedy continuation, from the
    in-process session's logits (one step per token, as a log-likelihood evaluation), over
    the tokens lm-eval sends: its remote tokenizer encodes without special tokens (no BOS)."""
    tok = session.tokenizer
    ctx = tok.encode(context, add_special_tokens=False)
    whole = tok.encode(context + continuation, add_special_tokens=False)
    assert whole[: len(ctx)] == ctx
    step = session.step_fn
    step.reset()
    logits = step.step(np.asarray(whole[:1], dtype=np.int64))
    total, greedy = 0.0, True
    for i, token in enumerate(whole[1:], start=1):
        if i >= len(ctx):
            x = np.asarray(logits, dtype=np.float64)
            x = x - x.max()
            lps = x - math.log(float(np.exp(x).sum()))
            total += float(lps[token])
            greedy = greedy and int(np.argmax(lps)) == token
        logits = step.step(np.asarray([token], dtype=np.int64))
    return total, greedy


def test_lm_eval_local_completions_loglikelihood_and_generate_until(
    server: Server, session: Any, tmp_path: Path
) -> None:
    result = _drive(server, tmp_path)
    # tokenizer_backend=auto found /tokenizer_info and /tokenize: no hub was needed.
    assert result["backend"] == "RemoteTokenizer"
    for (context, continuation), (value, greedy) in zip(
        PAIRS, result["loglikelihood"], strict=True
    ):
        ref_value, ref_greedy = _reference(session, context, continuation)
        assert value == pytest.approx(ref_value, abs=1e-5), (context, continuation)
        assert greedy == ref_greedy
    (text,) = result["generate_until"]
    expected = session.generate(GENERATE[0], 24)
    assert text == expected.split(".")[0]
