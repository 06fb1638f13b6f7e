"""STAND-IN for Triton's ``triton_python_backend_utils`` (tests only).

The real module exists only inside a Triton server's Python backend. This one has the part of
its API a decoupled model uses, as Triton's python_backend README documents it: input tensors
by name, ``Tensor(name, array).as_numpy()``, ``InferenceResponse(output_tensors, error)``,
``TritonError``, a request's response sender (``send(response=None, flags=0)``), the final
flag, and ``using_decoupled_model_transaction_policy(model_config)``. It records what a model
sends so a test can read the responses back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


@dataclass
class InferenceResponse:
    output_tensors: list[Tensor] = field(default_factory=list)
    error: TritonError | None = None

    def output(self, name: str) -> Tensor | None:
        return next((t for t in self.output_tensors if t.name() == name), None)

    def has_error(self) -> bool:
        return self.error is not None


@dataclass
class Sender:
    """Records (response, flags) pairs; refuses a send after the final flag, as Triton does."""

    sent: list[tuple[InferenceResponse | None, int]] = field(default_factory=list)

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self.sent and self.sent[-1][1] & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            raise RuntimeError("send after the final flag")
        self.sent.append((response, flags))

    def texts(self) -> list[str]:
        out = []
        for response, _ in self.sent:
            tensor = response.output("text_output") if response is not None else None
            if tensor is not None:
                out.extend(v.decode("utf-8") for v in tensor.as_numpy().reshape(-1))
        return out

    def errors(self) -> list[str]:
        return [r.error.message() for r, _ in self.sent if r is not None and r.error is not None]


@dataclass
class Request:
    inputs: dict[str, np.ndarray]
    sender: Sender = field(default_factory=Sender)

    def get_response_sender(self) -> Sender:
        return self.sender


def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
    value = request.inputs.get(name)
    return None if value is None else Tensor(name, value)


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    return bool((model_config.get("model_transaction_policy") or {}).get("decoupled"))
