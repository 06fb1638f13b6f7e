"""Opening an artifact for the Hugging Face drop-in: the logical model a name means, its first
candidate whose runtime steps one forward at a time, and the transformers model around it.

:class:`~rmbuild.transformers.auto.AutoModelForCausalLM` and
:meth:`~rmbuild.transformers.modeling.RmbuildModelForCausalLM.from_pretrained` both load
through :func:`load_model`; it lives below both so that neither imports the other back.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from rmbuild.errors import BackendUnavailable, IncompatibleArtifact

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.runtime.session import BackendSession
    from rmbuild.serve.model import LogicalModel
    from rmbuild.transformers.modeling import RmbuildModelForCausalLM

# transformers' from_pretrained keywords that choose weights, dtype or placement: the artifact
# fixed those when it was built, so they are ignored here (with a warning) rather than refused,
# and a script written for transformers runs unchanged.
HF_ONLY = frozenset(
    {
        "torch_dtype",
        "dtype",
        "device_map",
        "low_cpu_mem_usage",
        "trust_remote_code",
        "attn_implementation",
        "revision",
        "use_safetensors",
        "cache_dir",
        "local_files_only",
        "token",
        "force_download",
        "quantization_config",
        "offload_folder",
    }
)


def _open(store: Store | str | os.PathLike[str] | None) -> tuple[Store, bool]:
    """The store to read, and whether this call opened it (and closes it with the session)."""
    if store is None or isinstance(store, str | os.PathLike):
        from rmbuild.storage.store import open_store

        return open_store(store, read_only=True), True
    return store, False


def candidates(ref: str, store: Store, device: str | None, options: dict[str, Any]) -> LogicalModel:
    """The logical model ``ref`` names here, narrowed by ``device`` (see the module
    docstring); a runtime device name no candidate answers to goes into ``options``."""
    from rmbuild.serve.model import resolve_model

    model = resolve_model(store, ref)
    if device and device.lower() != "auto":
        named = [c for c in model.candidates if c.target.lower() == device.lower()]
        if named:
            # A target's own name is the narrowest choice: the example's target "cpu" is
            # also the class every CPU target is in.
            model.candidates = named
        elif any(c.matches(device) for c in model.candidates):
            model.pin(device)
        else:
            options["device"] = device
    return model


def open_session(
    ref: str | os.PathLike[str],
    *,
    device: str | None = "auto",
    store: Store | str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
) -> BackendSession:
    """A loaded session of the best candidate of ``ref`` whose runtime rmbuild steps one
    forward at a time (a backend that generates whole sequences in its own SDK is skipped)."""
    from rmbuild.runtime.kvloop import KVLoop
    from rmbuild.serve.model import load_first

    opened, own = _open(store)
    try:
        opts = dict(options or {})
        model = candidates(os.fspath(ref), opened, device, opts)
        skipped: list[str] = []
        skip = 0
        while True:
            try:
                index, session = load_first(model, store=opened, options=opts, skip=skip)
            except BackendUnavailable as exc:
                if skipped:
                    exc.context[:0] = skipped
                raise
            if isinstance(session.step_fn, KVLoop):
                break
            session.close()
            candidate = model.candidates[index]
            skipped.append(
                f"{candidate.label}: its runtime generates whole sequences, it runs no "
                "transformers forward"
            )
            skip = index + 1
            if skip >= len(model.candidates):
                raise IncompatibleArtifact(
                    f"no stored artifact of model {model.name!r} runs a forward step here",
                    context=skipped,
                    hint="use rmbuild.load(...).generate(...) for it, or build a target of "
                    "onnxruntime, openvino, iree or tensorrt",
                )
    except BaseException:
        if own:
            opened.close()
        raise
    if own:
        session.closers.append(opened.close)
    return session


def load_model(
    cls: type[RmbuildModelForCausalLM],
    model: str | os.PathLike[str],
    *args: Any,
    device: str | None = "auto",
    store: Store | str | os.PathLike[str] | None = None,
    verify: bool = False,
    max_model_len: int | None = None,
    **kwargs: Any,
) -> RmbuildModelForCausalLM:
    """The model behind :meth:`AutoModelForCausalLM.from_pretrained`."""
    from transformers import AutoConfig, GenerationConfig, PretrainedConfig

    if args:
        raise TypeError(
            "from_pretrained takes the model name and keywords only (device=, store=, "
            "verify=, max_model_len=, and the backend's runtime options)"
        )
    ignored = sorted(k for k in kwargs if k in HF_ONLY)
    if ignored:
        warnings.warn(
            f"rmbuild: ignored {', '.join(ignored)}: the artifact's weights, dtype and device "
            "were fixed when it was built (choose a target with device=)",
            stacklevel=3,
        )
    options = {k: v for k, v in kwargs.items() if k not in HF_ONLY}
    options.update(verify=verify, max_model_len=max_model_len)
    session = open_session(model, device=device, store=store, options=options)
    try:
        tree = session.info["path"]
        try:
            config = AutoConfig.from_pretrained(tree)
        except (ValueError, KeyError):
            # A model type this transformers does not know: its generic config still carries
            # what generate() reads (token ids, use_cache).
            config = PretrainedConfig.from_pretrained(tree)
        config._name_or_path = os.fspath(model)
        generation = None
        if os.path.isfile(os.path.join(tree, "generation_config.json")):
            generation = GenerationConfig.from_pretrained(tree)
        return cls(config, session, generation_config=generation)
    except BaseException:
        session.close()
        raise
