"""A Triton Python-backend model that generates text through rmbuild's session.

``rmbuild export --to triton`` copies this file as ``<repo>/<model>/1/model.py``. Triton's
Python backend imports it inside the server (``triton_python_backend_utils`` exists only
there) and calls ``initialize``, ``execute`` and ``finalize``. The model config's parameters
name the artifact (``artifact``), the store to read it from (``store``; ``RMBUILD_STORE`` in
the server's environment wins) and the context limit (``max_model_len``); the container needs
rmbuild with the artifact's runtime installed (``pip install 'rmbuild[onnx]'`` for ONNX
Runtime) and the store mounted, or the artifact pulled into it (``rmbuild pull ID``).

Inputs follow Triton's LLM models (its vLLM and TensorRT-LLM backends): ``text_input``
(string), optional ``max_tokens``, ``temperature``, ``top_p``, ``seed`` and ``stream``; the
output is ``text_output``. The model is decoupled: with ``stream`` true each piece of text is
a response of its own as it is generated (``/v2/models/<model>/generate_stream``), else one
response holds the whole text; a request that fails gets one response with the error. The
context limit is checked before the model runs, as ``rmbuild run`` does.
"""

from __future__ import annotations

import json
import os
from typing import Any

DEFAULT_MAX_TOKENS = 16


def _scalar(pb_utils: Any, request: Any, name: str, default: Any) -> Any:
    """An optional input's single value, or ``default`` where the request has none."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)
    if value.size == 0:
        return default
    item = value[0]
    if isinstance(item, bytes):
        return item.decode("utf-8")
    return item.item() if hasattr(item, "item") else item


class TritonPythonModel:
    """The model Triton's Python backend instantiates (its required class name)."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the artifact's session once per model instance."""
        import triton_python_backend_utils as pb_utils

        import rmbuild

        self.pb_utils = pb_utils
        config = json.loads(args["model_config"])
        # Triton passes the config as JSON with the proto's field names (string_value); the
        # camelCase JSON spelling is taken too.
        params = {
            key: value.get("string_value", value.get("stringValue", ""))
            for key, value in (config.get("parameters") or {}).items()
        }
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        store = os.environ.get("RMBUILD_STORE") or params.get("store") or None
        limit = params.get("max_model_len")
        self.session = rmbuild.load(
            params["artifact"], store=store, max_model_len=int(limit) if limit else None
        )

    def execute(self, requests: list[Any]) -> None:
        """Answer each request through its response sender (decoupled); returns None."""
        import numpy as np

        import rmbuild

        pb = self.pb_utils
        for request in requests:
            sender = request.get_response_sender()
            try:
                prompt = _scalar(pb, request, "text_input", "")
                max_tokens = int(_scalar(pb, request, "max_tokens", DEFAULT_MAX_TOKENS))
                params = rmbuild.SamplingParams(
                    temperature=float(_scalar(pb, request, "temperature", 0.0)),
                    top_p=float(_scalar(pb, request, "top_p", 1.0)),
                    seed=_scalar(pb, request, "seed", None),
                )
                stream = bool(_scalar(pb, request, "stream", False))

                def text(piece: str) -> Any:
                    out = pb.Tensor("text_output", np.array([piece.encode("utf-8")], dtype=object))
                    return pb.InferenceResponse(output_tensors=[out])

                if stream:
                    for piece in self.session.stream(prompt, max_tokens, params):
                        sender.send(text(piece))
                else:
                    sender.send(text(self.session.generate(prompt, max_tokens, params)))
                sender.send(flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            except Exception as exc:  # noqa: BLE001 - the client gets the reason, Triton lives on
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                sender.send(
                    pb.InferenceResponse(output_tensors=[], error=pb.TritonError(message)),
                    flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
        return None

    def finalize(self) -> None:
        """Close the session (and its pin on the artifact) when Triton unloads the model."""
        session = getattr(self, "session", None)
        if session is not None:
            session.close()
