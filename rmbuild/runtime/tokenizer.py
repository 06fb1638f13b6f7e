"""Tokenization at run time through the ``tokenizers`` library alone.

transformers is heavy to import and not needed to run an artifact: ``tokenizer.json`` carries the
whole pipeline (normalizer, pre-tokenizer, model, post-processor adding BOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rmbuild.errors import StoreCorrupt


class Tokenizer:
    """A thin wrapper over ``tokenizers.Tokenizer`` loaded from an artifact folder."""

    def __init__(self, artifact_dir: Path) -> None:
        path = artifact_dir / "tokenizer.json"
        if not path.is_file():
            raise StoreCorrupt(
                f"artifact has no tokenizer.json ({artifact_dir})",
                hint="the profile must carry the tokenizer files into the artifact",
            )
        from tokenizers import Tokenizer as _Tokenizer

        self._tok = _Tokenizer.from_file(str(path))

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens=False`` leaves out what the
        post-processor adds (BOS), as for text a chat template already begins with it."""
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def vocab_size(self) -> int:
        """How many token ids exist (added tokens included)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary entry of ``token_id`` (None outside the vocabulary)."""
        return self._tok.id_to_token(int(token_id))

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)


class StreamDecoder:
    """Turns a token stream into text pieces without splitting multi-byte characters.

    Each step decodes a short window, not the whole sequence: the text of the tokens since the
    last piece with those of the piece before as context, minus that context's own text (a
    token's text can depend on its neighbours, e.g. a leading space). A piece that ends inside
    a multi-byte character (U+FFFD) waits for the next token. Joined, the pieces are the text a
    full decode gives; :meth:`flush` adds what only a full decode has at the end (an incomplete
    character). This is the incremental detokenization vLLM and TGI use.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # where the context window starts
        self._read = 0  # where the tokens not yet released start
        self._emitted = 0  # characters released so far

    def push(self, token: int) -> str:
        """The text that ``token`` completes ("" while a character is still incomplete)."""
        return self.push_many((token,))

    def push_many(self, tokens: Sequence[int]) -> str:
        """The text that ``tokens`` complete, with one decode of the window for all of them."""
        ids, decode = self._ids, self._tokenizer.decode
        ids.extend(tokens)
        context = decode(ids[self._prefix : self._read]) if self._read > self._prefix else ""
        text = decode(ids[self._prefix :])
        if len(text) <= len(context) or text.endswith("\ufffd"):
            return ""
        piece = text[len(context) :]
        self._prefix, self._read = self._read, len(ids)
        self._emitted += len(piece)
        return piece

    def flush(self) -> str:
        text = self._tokenizer.decode(self._ids)
        piece = text[self._emitted :]
        self._emitted = len(text)
        return piece
