"""A deterministic model for trying the API and for load tests.

The same input always gives the same reply, so a client can check the text it reassembled
against :func:`synthetic_reply`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec

from streams.backends.base import Chunk, ModelRequest
from streams.tokens import count_tokens, split_tokens
from streams.types import Usage

_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris "
    "nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse "
    "cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui "
    "officia deserunt mollit anim id est laborum"
).split()
_SENTENCE_WORDS = 9


class SyntheticParams(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """Knobs of the synthetic model, given as the agent's ``model.params``."""

    mode: Literal["lorem", "echo"] = "lorem"
    tokens_per_second: float = msgspec.field(default=20.0)
    first_token_latency_ms: int = 200
    reply_tokens: int = 60

    def __post_init__(self) -> None:
        if not 0 < self.tokens_per_second <= 100_000:
            raise ValueError("tokensPerSecond must be in (0, 100000]")
        if not 0 <= self.first_token_latency_ms <= 600_000:
            raise ValueError("firstTokenLatencyMs must be in [0, 600000]")
        if not 1 <= self.reply_tokens <= 1_000_000:
            raise ValueError("replyTokens must be in [1, 1000000]")

    @classmethod
    def parse(cls, params: dict[str, Any]) -> SyntheticParams:
        return msgspec.convert(params, cls)


def _lorem_pieces(seed_text: str, n_tokens: int) -> list[str]:
    seed = hashlib.sha256(seed_text.encode()).digest()
    pieces: list[str] = []
    words_in_sentence = 0
    i = 0
    while len(pieces) < n_tokens:
        remaining = n_tokens - len(pieces)
        if words_in_sentence == _SENTENCE_WORDS and remaining > 1:
            pieces.append(".")
            words_in_sentence = 0
            continue
        word = _WORDS[(seed[i % len(seed)] + i * 7) % len(_WORDS)]
        i += 1
        if words_in_sentence == 0:
            word = word.capitalize()
        pieces.append(word if not pieces else " " + word)
        words_in_sentence += 1
    return pieces


def reply_pieces(user_text: str, params: SyntheticParams) -> list[str]:
    if params.mode == "echo":
        return split_tokens(user_text) or [user_text]
    return _lorem_pieces(user_text, params.reply_tokens)


def synthetic_reply(user_text: str, params: SyntheticParams) -> str:
    """The exact reply the synthetic model gives to ``user_text``."""
    return "".join(reply_pieces(user_text, params))


def prompt_tokens(request: ModelRequest) -> int:
    return count_tokens(request.instructions) + sum(count_tokens(m.text) for m in request.messages)


class SyntheticBackend:
    """Emits tokens on a fixed schedule, so deltas are predictable.

    Each chunk carries every token that has fallen due, one when the model keeps up with its
    clock and several when the loop was busy, as a real upstream's network batching does; this
    keeps fast settings (thousands of tokens a second) from costing a wakeup per token.
    """

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        params = SyntheticParams.parse(request.model.params)
        pieces = reply_pieces(request.messages[-1].text, params)
        usage = Usage(input_tokens=prompt_tokens(request))
        yield Chunk(usage=usage.totalled())
        start = time.monotonic() + params.first_token_latency_ms / 1000
        rate = params.tokens_per_second
        sent = 0
        while sent < len(pieces):
            due = min(len(pieces), int((time.monotonic() - start) * rate) + 1)
            if due <= sent:
                await asyncio.sleep(start + sent / rate - time.monotonic())
                continue
            yield Chunk(text="".join(pieces[sent:due]))
            sent = due
        usage.output_tokens = sum(count_tokens(piece) for piece in pieces)
        yield Chunk(usage=usage.totalled(), finish_reason="stop")
