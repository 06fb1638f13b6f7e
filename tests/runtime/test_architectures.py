"""Tiny random-weight models of many architectures give PyTorch's greedy tokens on every runtime.

Each architecture is made here from a transformers config (2 layers, hidden 64, the tiny
Llama's tokenizer), built once through rmbuild's library (one ``onnx-export``, shared by the
targets: ONNX Runtime runs the export itself, ``openvino-cpu`` at fp32, ``iree-cpu``) and
generates 16 greedy tokens on each runtime, which must equal a PyTorch KV-cache greedy loop's.
Bloom's two-named mask on OpenVINO and Falcon's one KV head under multi_query were found
this way. Architectures optimum itself cannot export must fail saying so.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "examples" / "tiny-llama" / "model"
PROMPT_IDS = [1, 57, 300, 12, 999, 4]
STEPS = 16
TARGETS = {
    "onnxruntime": "{profile: onnx-export}",
    "openvino": "{profile: openvino-cpu, flags: {compress_to_fp16: false}}",
    "iree": "{profile: iree-cpu}",
}

_COMMON = {"vocab_size": 1000, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
_DECODER = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}
_GQA = {**_DECODER, "num_key_value_heads": 2}
ARCHS: dict[str, dict[str, Any]] = {
    "llama": _GQA,
    "qwen2": _GQA,
    "qwen3": {**_GQA, "head_dim": 16},
    "mistral": {**_GQA, "sliding_window": None},
    "phi3": {**_GQA, "pad_token_id": 0},
    "gemma": {**_GQA, "head_dim": 16},
    "gemma2": {**_GQA, "head_dim": 16, "sliding_window": 64},
    "granite": _GQA,
    "olmo": _DECODER,
    "stablelm": {**_DECODER, "num_key_value_heads": 2},
    "gpt_neox": {**_DECODER},
    "opt": {
        "hidden_size": 64,
        "ffn_dim": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "word_embed_proj_dim": 64,
        "max_position_embeddings": 128,
    },
    "gpt2": {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128},
    "bloom": {"hidden_size": 64, "n_layer": 2, "n_head": 4},
    "falcon": {  # multi_query: one KV head, spelt num_kv_heads
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "multi_query": True,
        "new_decoder_architecture": False,
        "alibi": False,
        "parallel_attn": True,
    },
}
# What optimum-onnx cannot export, and the words its error uses.
NOT_EXPORTABLE: dict[str, tuple[dict[str, Any], str]] = {
    "starcoder2": (_GQA, "custom or unsupported architecture"),
}


def _make_model(arch: str, overrides: dict[str, Any], out: Path) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model_type = arch.split("-")[0]
    config = transformers.AutoConfig.for_model(model_type, **{**_COMMON, **overrides})
    config.tie_word_embeddings = getattr(config, "tie_word_embeddings", False)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # random init is small; widen it so logits are far from ties
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.2)
    model.eval().save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(TOKENIZER / name, out / name)
    return out


def _torch_greedy(model_dir: Path) -> list[int]:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="eager"
    ).eval()
    tokens: list[int] = []
    with torch.no_grad():
        step, past = torch.tensor([PROMPT_IDS]), None
        for _ in range(STEPS):
            out = model(step, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tokens.append(int(out.logits[0, -1].argmax()))
            step = torch.tensor([[tokens[-1]]])
    return tokens


def _spec(root: Path, model_dir: Path, targets: dict[str, str]) -> Path:
    lines = ["name: arch", f"source: {{path: {model_dir}, format: hf}}", "targets:"]
    lines += [f"  {name}: {text}" for name, text in targets.items()]
    spec = root / "model.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


def _needs_toolchains() -> None:
    for module in ("numpy", "torch", "transformers", "optimum.exporters.onnx", "onnxruntime"):
        pytest.importorskip(module)
    pytest.importorskip("openvino")
    pytest.importorskip("iree.runtime")
    pytest.importorskip("iree.compiler")


@pytest.fixture(scope="module", params=list(ARCHS))
def arch_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One architecture: its model, its PyTorch tokens, and its three artifacts in one store."""
    _needs_toolchains()
    from artifact_store import Store
    from rmbuild.build import compile_spec

    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    model_dir = _make_model(arch, ARCHS[arch], root / "model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RMBUILD_CONFIG_DIR", str(root / "config"))
        store = Store(root / "store")
        keys = {
            r.target: r.artifact.key
            for r in compile_spec(_spec(root, model_dir, TARGETS), store=store)
        }
        yield arch, _torch_greedy(model_dir), store, keys
        store.close()


@pytest.mark.parametrize("target", list(TARGETS))
def test_runtime_gives_the_torch_tokens(arch_build, target: str) -> None:  # noqa: ANN001
    import numpy as np

    from rmbuild.loading import load

    arch, expected, store, keys = arch_build
    with load(keys[target], store=store) as session:
        session.eos_token_ids = set()  # compare all steps, like the reference
        assert session.step_fn.layout.source == "kv_layout.json"
        got = list(session.generate_ids(PROMPT_IDS, STEPS))
        assert isinstance(session.step_fn.step(np.asarray([got[-1]])), np.ndarray)
    assert got == expected, f"{arch} on {target}"


@pytest.mark.parametrize("arch", list(NOT_EXPORTABLE))
def test_what_optimum_cannot_export_says_so(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_toolchains()
    from artifact_store import Store
    from rmbuild.build import compile_spec
    from rmbuild.errors import ToolError

    overrides, words = NOT_EXPORTABLE[arch]
    model_dir = _make_model(arch, overrides, tmp_path / "model")
    monkeypatch.setenv("RMBUILD_CONFIG_DIR", str(tmp_path / "config"))
    spec = _spec(tmp_path, model_dir, {"onnxruntime": TARGETS["onnxruntime"]})
    with Store(tmp_path / "store") as store, pytest.raises(ToolError) as err:
        compile_spec(spec, store=store)
    text = "\n".join([err.value.message, *err.value.context])
    assert words in text
