"""Items that travel from a runner, through Redis, to every watcher of an exchange.

On the channel an item is ``kind|stream-id|json``; in the replay log it is an entry with
fields ``k`` and ``d`` under the same stream id. The JSON is the native surface's ``data:``
line, encoded once by the runner.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from streams.types import Exchange, Usage

ItemKind = Literal["delta", "done", "error"]
TERMINAL_KINDS = frozenset({"done", "error"})


class DeltaData(msgspec.Struct, rename="camel"):
    seq: int
    text: str
    usage: Usage


class ErrorData(msgspec.Struct, rename="camel", kw_only=True):
    code: str
    message: str
    retryable: bool = False
    exchange: Exchange | None = None


def stream_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Item:
    """One delta or end event. ``frames`` caches each surface's rendering of it."""

    __slots__ = ("data", "frames", "id", "key", "kind")

    def __init__(self, kind: str, stream_id: str, data: bytes) -> None:
        self.kind = kind
        self.id = stream_id
        self.key = stream_key(stream_id)
        self.data = data
        self.frames: dict[str, bytes] = {}

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    @classmethod
    def parse(cls, payload: bytes) -> Item:
        kind, stream_id, data = payload.split(b"|", 2)
        return cls(kind.decode(), stream_id.decode(), data)


def merge_deltas(items: list[Item]) -> Item:
    """Fold consecutive deltas into one: texts concatenate, seq and usage are the latest."""
    decoded = [msgspec.json.decode(i.data, type=DeltaData) for i in items]
    merged = DeltaData(
        seq=decoded[-1].seq, text="".join(d.text for d in decoded), usage=decoded[-1].usage
    )
    return Item("delta", items[-1].id, msgspec.json.encode(merged))


def compact(items: list[Item]) -> list[Item]:
    """Merge every run of consecutive deltas, keeping end events in place."""
    out: list[Item] = []
    run: list[Item] = []
    for item in items:
        if item.kind == "delta":
            run.append(item)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else merge_deltas(run))
            run = []
        out.append(item)
    if run:
        out.append(run[0] if len(run) == 1 else merge_deltas(run))
    return out
