"""Token ids to text pieces for a served request: stop strings and held-back text.

A stop string can arrive split over several tokens, so the text that could still be the start
of one is held back until the next token decides; the stop string itself is never sent (as in
OpenAI's API). Multi-byte characters split across byte-level BPE tokens are held back by the
:class:`~rmbuild.runtime.tokenizer.StreamDecoder` underneath.
"""

from __future__ import annotations

from rmbuild.runtime.tokenizer import StreamDecoder, Tokenizer


class TextStream:
    """Feed token ids with :meth:`push`; each call returns the text that is safe to send."""

    def __init__(self, tokenizer: Tokenizer, stop: tuple[str, ...] = ()) -> None:
        self._decoder = StreamDecoder(tokenizer)
        self._stop = stop
        self.text = ""  # everything decoded so far (up to a stop string, once one is seen)
        self._sent = 0
        self.stopped = False

    def push(self, token: int) -> str:
        """The new text that can be sent after ``token``; sets :attr:`stopped` on a stop."""
        self.text += self._decoder.push(token)
        return self._release()

    def push_many(self, tokens: list[int]) -> str:
        """:meth:`push` for several tokens at once, one decode for all of them."""
        self.text += self._decoder.push_many(tokens)
        return self._release()

    def finish(self) -> str:
        """What is left to send once generation ended."""
        if not self.stopped:
            self.text += self._decoder.flush()
            self._cut_at_stop()
        piece = self.text[self._sent :]
        self._sent = len(self.text)
        return piece

    def _cut_at_stop(self) -> None:
        if not self._stop:
            return
        # Search only from where an unsent stop string could begin.
        start = max(0, self._sent - max(len(s) for s in self._stop) + 1)
        hits = [i for s in self._stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def _release(self) -> str:
        self._cut_at_stop()
        if self.stopped:
            return self.finish()
        end = len(self.text) - self._partial_stop()
        if end <= self._sent:
            return ""
        piece = self.text[self._sent : end]
        self._sent = end
        return piece

    def _partial_stop(self) -> int:
        """How many trailing characters could be the start of a stop string."""
        longest = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(self.text)), longest, -1):
                if self.text.endswith(s[:n]):
                    longest = n
                    break
        return longest
