"""Chat messages to prompt tokens through the model's own chat template.

The template is the one Hugging Face tokenizers carry (``chat_template.jinja`` beside the
tokenizer, or ``chat_template`` in ``tokenizer_config.json``), rendered the way transformers
renders it (Jinja with ``trim_blocks`` and ``lstrip_blocks``, ``add_generation_prompt``,
``raise_exception``) but in Jinja's immutable sandbox: a template comes with a model, so it is
untrusted input. The rendered text already holds the special tokens it wants, so it is encoded
without adding any.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rmbuild.runtime.tokenizer import Tokenizer
from rmbuild.serve.protocol import APIError, ChatMessage


def _token(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class ChatTemplate:
    """A model's chat template (or the lack of one) and its special tokens."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        source: str | None,
        bos_token: str | None,
        eos_token: str | None,
    ) -> None:
        self.tokenizer = tokenizer
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._compiled: Any = None

    @classmethod
    def from_artifact(cls, folder: str | Path | None, tokenizer: Tokenizer) -> ChatTemplate:
        """Read ``tokenizer_config.json`` of the artifact folder (absent: no template)."""
        config: dict[str, Any] = {}
        if folder is not None:
            path = Path(folder) / "tokenizer_config.json"
            if path.is_file():
                try:
                    config = json.loads(path.read_text())
                except ValueError:
                    config = {}
        source = config.get("chat_template")
        if folder is not None:
            # transformers >= 4.43 saves the template beside the config, not inside it.
            jinja = Path(folder) / "chat_template.jinja"
            legacy = Path(folder) / "chat_template.json"
            if jinja.is_file():
                source = jinja.read_text()
            elif legacy.is_file():
                try:
                    source = json.loads(legacy.read_text()).get("chat_template", source)
                except (ValueError, AttributeError):
                    pass
        if isinstance(source, list):  # named templates: the "default" one serves chat
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default") or next(iter(named.values()), None)
        return cls(
            tokenizer,
            source if isinstance(source, str) else None,
            _token(config.get("bos_token")),
            _token(config.get("eos_token")),
        )

    def render(self, messages: list[ChatMessage]) -> str:
        """The prompt text for ``messages``, ending where the assistant's reply begins."""
        if self.source is None:
            raise APIError(
                400,
                "this model has no chat template (no chat_template.jinja and no chat_template in "
                "tokenizer_config.json): use /v1/completions with a prompt",
                param="messages",
            )
        if self._compiled is None:
            from jinja2 import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise
            try:
                self._compiled = env.from_string(self.source)
            except TemplateError as exc:
                raise APIError(
                    400, f"the model's chat template is broken: {exc}", param="messages"
                ) from None
        from jinja2 import TemplateError

        try:
            return self._compiled.render(
                messages=[{"role": m.role, "content": m.text()} for m in messages],
                add_generation_prompt=True,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except ValueError as exc:
            raise APIError(400, f"messages: {exc}", param="messages") from None
        except TemplateError as exc:
            raise APIError(
                400, f"the model's chat template failed: {exc}", param="messages"
            ) from None

    def encode(self, messages: list[ChatMessage]) -> list[int]:
        """Token ids of the rendered conversation."""
        try:
            text = self.render(messages)
        except ValueError as exc:  # a message part that is not text
            raise APIError(400, f"messages: {exc}", param="messages") from None
        return self.tokenizer.encode(text, add_special_tokens=False)


def _raise(message: str) -> None:
    raise ValueError(message)
