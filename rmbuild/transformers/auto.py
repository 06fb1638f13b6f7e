"""``from_pretrained`` for rmbuild's names: a model.yaml, a model name, an alias or an artifact id.

The name means what it means to ``rmbuild serve`` (:mod:`rmbuild.serve.model`): every stored
artifact of the model that can run here, best first by the device policy, and the first one
that loads is used. ``device="auto"`` keeps that order; a target name keeps that target (even
where a device class has the same name), a device class (``npu``, ``gpu``, ``cpu``), a backend
or an artifact id keeps the candidates it names; any other value is the runtime's own device
name (``GPU.1``), as ``rmbuild serve --device`` takes it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rmbuild.errors import ArtifactNotFound, BackendUnavailable
from rmbuild.transformers.loading import _open, candidates, load_model

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.transformers.modeling import RmbuildModelForCausalLM


class AutoModelForCausalLM:
    """``transformers.AutoModelForCausalLM`` for rmbuild's artifacts.

    ``AutoModelForCausalLM.from_pretrained("chat-main", device="auto")`` returns a
    :class:`~rmbuild.transformers.modeling.RmbuildModelForCausalLM`: transformers'
    ``generate()`` over the artifact's runtime.
    """

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *args: Any,
        device: str | None = "auto",
        store: Store | str | os.PathLike[str] | None = None,
        verify: bool = False,
        max_model_len: int | None = None,
        **kwargs: Any,
    ) -> RmbuildModelForCausalLM:
        """Load the artifact ``model`` names and wrap it as a transformers model.

        Args:
            model: a model.yaml, a model name with stored artifacts, an alias or an artifact
                id (``rmbuild ls`` lists them).
            device: ``"auto"`` (the device policy's best runnable candidate), or a target,
                device class, backend or artifact id to keep only those candidates, or a
                runtime device name (``GPU.1``).
            store: a Store or its folder; default ``$RMBUILD_STORE`` or the user cache dir.
            verify: re-hash the artifact's files before loading.
            max_model_len: the context limit, as for :func:`rmbuild.load`.
            **kwargs: the backend's runtime options (``intra_op_threads``...).
                transformers' placement keywords (``torch_dtype``, ``device_map``...) are
                ignored with a warning: the artifact fixed them at build time.

        Raises:
            rmbuild.errors.ArtifactNotFound: nothing stored answers to ``model`` (exit 5).
            rmbuild.errors.BackendUnavailable: no candidate loads here (exit 7).
            rmbuild.errors.IncompatibleArtifact: no candidate runs a forward step (exit 6).
        """
        from rmbuild.transformers.modeling import RmbuildModelForCausalLM

        return load_model(
            RmbuildModelForCausalLM,
            model,
            *args,
            device=device,
            store=store,
            verify=verify,
            max_model_len=max_model_len,
            **kwargs,
        )

    @classmethod
    def from_config(cls, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "an rmbuild model comes from a built artifact: use from_pretrained(name) "
            "(transformers.AutoModelForCausalLM.from_config makes a PyTorch model)"
        )


def _artifact_tokenizer(
    name: str, store: Store | str | os.PathLike[str] | None, args: tuple[Any, ...], kwargs: Any
) -> Any:
    """The tokenizer shipped in the artifact ``name`` names, or None where ``name`` is no
    rmbuild name here (then it is a Hugging Face id, which transformers resolves)."""
    import transformers

    from rmbuild.errors import RmbuildError

    try:
        opened, own = _open(store)
    except RmbuildError:
        return None  # no store here: nothing can answer to an rmbuild name
    try:
        try:
            model = candidates(name, opened, None, {})
        except (ArtifactNotFound, BackendUnavailable):
            return None
        for candidate in model.candidates:
            tree = opened.materialize(candidate.record.key)
            if (tree / "tokenizer.json").is_file() or (tree / "tokenizer_config.json").is_file():
                return transformers.AutoTokenizer.from_pretrained(os.fspath(tree), *args, **kwargs)
        return None
    finally:
        if own:
            opened.close()


class AutoTokenizer:
    """``transformers.AutoTokenizer`` that also takes rmbuild's names (a model.yaml, a model
    name, an alias, an artifact id): the tokenizer files shipped in the artifact, which are the
    source model's. A local folder or a hub id goes to transformers as it is."""

    @classmethod
    def from_pretrained(
        cls,
        name: str | os.PathLike[str],
        *args: Any,
        store: Store | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        import transformers

        text = os.fspath(name)
        if not os.path.isdir(text):
            found = _artifact_tokenizer(text, store, args, kwargs)
            if found is not None:
                return found
        return transformers.AutoTokenizer.from_pretrained(name, *args, **kwargs)
