"""Cache keys of an inline job's results, as its frames arrive.

What a key must cover is what decides the result, which depends on the backend:
- frame-independent: the frame itself (and the job's context: backend, its code and
  weights, options, keyframes), so a changed frame is the only one computed again;
- causal (a memory that looks back only, like `paint`): every frame up to this one, in
  order, chained as they arrive, so a stream cut anywhere (kill -9, a client gone) is
  reused up to there whatever the chunking;
- any other backend: the whole input, known once the input is complete.
"""

from __future__ import annotations

from longanim.engine.server.result_cache import array_digest, digest


class InlineKeys:
    def __init__(self, context: str, *, independent: bool, causal: bool):
        self.context = context
        self.kind = "frame" if independent else ("prefix" if causal else "whole")
        self._chain = context
        self._seen: list[list] = []

    @property
    def per_frame(self) -> bool:
        """Whether `add` gives the key at once (else only `whole_keys` at the end)."""
        return self.kind != "whole"

    def add(self, number: int, frame) -> str | None:
        fingerprint = array_digest(frame)
        if self.kind == "frame":
            return digest(self.context, number, fingerprint)
        if self.kind == "prefix":
            self._chain = digest(self._chain, number, fingerprint)
            return self._chain
        self._seen.append([number, fingerprint])
        return None

    def whole_keys(self) -> dict[int, str]:
        """For a whole-input backend, every frame's key once the input is complete."""
        whole = digest(self.context, self._seen)
        return {n: digest(whole, n) for n, _ in self._seen}

    @staticmethod
    def whole_keys_of(context: str, frames) -> dict[int, str]:
        keys = InlineKeys(context, independent=False, causal=False)
        for number, frame in frames:
            keys.add(number, frame)
        return keys.whole_keys()
