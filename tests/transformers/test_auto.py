"""from_pretrained takes rmbuild's names, as ``rmbuild serve`` does, on the example's CPU targets:
a model name, an alias, an artifact id, a model.yaml; ``device`` narrows the candidates; the
config and generation config are the artifact's; transformers' placement keywords are ignored
with a warning; AutoTokenizer reads the tokenizer the artifact ships."""

from __future__ import annotations

from typing import Any

import pytest

from tests.transformers.conftest import ALIAS, EXAMPLE, EXAMPLE_TARGETS, ExampleStore

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _load(example_store: ExampleStore, name: str, **kwargs: Any) -> Any:
    from rmbuild.transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(name, store=example_store.store, **kwargs)


@pytest.mark.parametrize("how", ["name", "alias", "id", "model.yaml"])
def test_every_rmbuild_name_loads_a_model_that_generates(
    example_store: ExampleStore, how: str
) -> None:
    from transformers import GenerationMixin, PreTrainedModel

    keys = example_store.keys
    name = {
        "name": "tiny-llama",
        "alias": ALIAS,
        "id": keys["iree-cpu"][:16],
        "model.yaml": str(EXAMPLE / "model.yaml"),
    }[how]
    with _load(example_store, name) as model:
        assert isinstance(model, PreTrainedModel) and isinstance(model, GenerationMixin)
        info = model.session.info
        assert info["model"] == "tiny-llama" and info["artifact"] in keys.values()
        if how == "alias":
            assert info["artifact"] == keys["cpu"]
        if how == "id":
            assert info["artifact"] == keys["iree-cpu"]
        assert model.config.model_type == "llama"
        # generation_config.json of the artifact, as PyTorch's from_pretrained reads it.
        assert model.generation_config.max_new_tokens == 32
        out = model.generate(torch.tensor([[1, 299, 566, 298, 546, 297]]), do_sample=False)
    # The example's README: its first new tokens on every backend.
    assert out[0, 6:12].tolist() == [366, 15, 390, 277, 515, 283]


@pytest.mark.parametrize("target", list(EXAMPLE_TARGETS))
def test_device_keeps_the_candidates_it_names(example_store: ExampleStore, target: str) -> None:
    backend = EXAMPLE_TARGETS[target]
    for device in (target, backend):
        with _load(example_store, "tiny-llama", device=device) as model:
            assert model.session.info["artifact"] == example_store.keys[target], device


def test_a_name_nothing_answers_to_is_exit_5(example_store: ExampleStore) -> None:
    from rmbuild.errors import EXIT_NOT_FOUND, ArtifactNotFound

    with pytest.raises(ArtifactNotFound) as err:
        _load(example_store, "no-such-model")
    assert err.value.exit_code == EXIT_NOT_FOUND
    assert "rmbuild ls" in (err.value.hint or "")


def test_placement_keywords_are_ignored_with_a_warning(example_store: ExampleStore) -> None:
    with pytest.warns(UserWarning, match=r"ignored device_map, torch_dtype"):
        model = _load(example_store, ALIAS, torch_dtype=torch.float16, device_map="cuda")
    with model:
        assert model(torch.tensor([[1, 299]])).logits.dtype == torch.float32


def test_the_tokenizer_comes_from_the_artifact(example_store: ExampleStore) -> None:
    from transformers import AutoTokenizer as HFAutoTokenizer

    from rmbuild.transformers import AutoTokenizer

    ours = AutoTokenizer.from_pretrained("tiny-llama", store=example_store.store)
    source = HFAutoTokenizer.from_pretrained(EXAMPLE / "model")
    assert "/trees/" in ours.name_or_path  # the artifact's copy, not the source folder
    text = "The future of AI is"
    assert ours(text)["input_ids"] == source(text)["input_ids"] == [1, 299, 566, 298, 546, 297]
    # A Hugging Face folder is transformers' to read, as before.
    folder = AutoTokenizer.from_pretrained(EXAMPLE / "model", store=example_store.store)
    assert folder.name_or_path == str(EXAMPLE / "model")
