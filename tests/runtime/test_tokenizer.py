from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")

from tokenizers import ByteLevelBPETokenizer, SentencePieceBPETokenizer  # noqa: E402

from rmbuild.runtime.tokenizer import StreamDecoder, Tokenizer  # noqa: E402

CORPUS = [
    "The future of AI is bright, and the past was long.",
    "héllo wörld, ünïcödé ✓ and 日本語の文章 and 中文字符 🤖🤖",
    "  leading spaces\n\nand blank lines\ttabs",
] * 20


def _saved(tmp_path: Path, kind: str) -> Tokenizer:
    trainer = ByteLevelBPETokenizer() if kind == "byte-level" else SentencePieceBPETokenizer()
    trainer.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1)
    trainer.save(str(tmp_path / "tokenizer.json"))
    return Tokenizer(tmp_path)


@pytest.mark.parametrize("kind", ["byte-level", "metaspace"])
def test_stream_pieces_join_to_the_full_decode(tmp_path: Path, kind: str) -> None:
    tok = _saved(tmp_path, kind)
    rng = random.Random(0)
    vocab = tok.vocab_size()
    sequences = [tok.encode(text, add_special_tokens=False) for text in CORPUS[:3]]
    sequences += [[rng.randrange(vocab) for _ in range(rng.randrange(1, 80))] for _ in range(200)]
    for ids in sequences:
        decoder = StreamDecoder(tok)
        pieces = [decoder.push(i) for i in ids]
        full = tok.decode(ids)
        assert "".join(pieces) + decoder.flush() == full, ids
        if "\ufffd" not in full:
            assert not any("\ufffd" in p for p in pieces), "a split character was released"


def test_a_multibyte_character_is_held_until_whole(tmp_path: Path) -> None:
    tok = _saved(tmp_path, "byte-level")
    # One token per byte: the emoji's four bytes come as four tokens.
    byte_ids = [tok._tok.token_to_id(c) for c in "ðŁ¤ĸ"]  # byte-level spelling of U+1F916
    assert None not in byte_ids
    decoder = StreamDecoder(tok)
    assert [decoder.push(i) for i in byte_ids] == ["", "", "", "🤖"]


@pytest.mark.parametrize("kind", ["byte-level", "metaspace"])
def test_pushing_several_tokens_at_once_gives_the_same_text(tmp_path: Path, kind: str) -> None:
    # A served stream decodes the tokens that waited together in one call: cut anywhere, the
    # pieces still join to the full decode and no split character is released.
    tok = _saved(tmp_path, kind)
    rng = random.Random(1)
    vocab = tok.vocab_size()
    for _ in range(200):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 80))]
        decoder, pieces, i = StreamDecoder(tok), [], 0
        while i < len(ids):
            n = rng.randrange(1, 9)
            pieces.append(decoder.push_many(ids[i : i + n]))
            i += n
        full = tok.decode(ids)
        assert "".join(pieces) + decoder.flush() == full, ids
        if "\ufffd" not in full:
            assert not any("\ufffd" in p for p in pieces), "a split character was released"
