"""The one tokenizer the engine uses for estimates and for the synthetic model.

It is a word/punctuation splitter, not a model's BPE: real backends replace its estimates
with the upstream's own counts at the end of each exchange.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into pieces of one token each that concatenate back to ``text``."""
    pieces = _PIECE.findall(text)
    tail = len(text) - sum(map(len, pieces))
    if tail:
        if pieces:
            pieces[-1] += text[-tail:]
        else:
            pieces.append(text)
    return pieces
