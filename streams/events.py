"""Items that travel from a runner, through Redis, to every watcher of an exchange.

On the channel an item is ``kind|stream-id|payload``; in the replay log it is an entry with
fields ``k`` and ``d`` under the same stream id. Payloads are surface-neutral: a ``delta`` is
a :class:`Delta` as a JSON array, an ``end`` is the finished :class:`Exchange`. Each surface
renders an item once and caches the frame on it for all of its watchers.

A ``begin`` marks a new exchange on the session's channel (never in a log): its payload is
the exchange id and its id ``<created ms>-0``. Watchers of one exchange skip it; a watcher
of the whole session (``streams.session_watch``) hands it on carrying the :class:`Exchange`
as it began, so ``exchange()`` reads begins and ends alike.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from streams.types import Exchange, Usage

ItemKind = Literal["begin", "delta", "end"]


class Delta(msgspec.Struct, array_like=True):
    """``usage`` is the exchange's so far, cache writes split by TTL; a payload stored before
    the split was kept decodes with them all 5-minute writes (see :class:`Usage`)."""

    seq: int
    text: str
    usage: Usage


_delta = msgspec.json.Decoder(Delta)
_end = msgspec.json.Decoder(Exchange)


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
        return self.kind == "end"

    def delta(self) -> Delta:
        return _delta.decode(self.data)

    def exchange(self) -> Exchange:
        """The finished exchange an ``end`` item carries (or, handed on by a session
        watcher, the exchange a ``begin`` started)."""
        return _end.decode(self.data)

    @classmethod
    def parse(cls, payload: bytes) -> Item:
        kind, stream_id, data = payload.split(b"|", 2)
        return cls(kind.decode(), stream_id.decode(), data)


def merge_deltas(items: list[Item]) -> Item:
    """Fold consecutive deltas into one: texts concatenate, seq and usage are the latest."""
    decoded = [i.delta() for i in items]
    merged = Delta(decoded[-1].seq, "".join(d.text for d in decoded), decoded[-1].usage)
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
