"""``/v1/chat/stream``'s body: one frame per engine event, each an envelope with an SSE id.

A delta frame carries the text since the last one and the usage so far (the engine flushes
at the session's refresh interval); the end of the exchange is a final frame with the whole
reply and its exact usage, or, for a failed exchange, one error envelope. Keepalives are SSE
comments. At shutdown the stream ends without a final frame: the client resumes elsewhere
with ``Last-Event-ID``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from server.surfaces.sonaops.envelope import OK, OK_MESSAGE, Head
from server.surfaces.sonaops.errors import CODES
from server.surfaces.sonaops.frames import PING, event_frame, head_bytes
from server.surfaces.sonaops.wire import Chunk, usage_out
from streams import types as domain
from streams.events import Item
from streams.watch import Ping, Reconnect, Watch

SURFACE = "sonaops"
_EVENT_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_U64 = 2**64
# A failed exchange's code, where the engine's reason has a Sonaops code of its own.
_FAILED = {"upstream_rate_limited": CODES["rate_limited"]}


def is_event_id(value: str) -> bool:
    """An event id this server could have sent: a Redis stream id that has a successor."""
    match = _EVENT_ID.fullmatch(value)
    return match is not None and int(match[1]) < _U64 - 1 and int(match[2]) < _U64


@dataclass(frozen=True, slots=True)
class Reply:
    """Whose events a stream carries: every frame names them."""

    conversation_id: str
    message_id: str
    trace_id: str


def item_head(item: Item, reply: Reply) -> bytes:
    """The event's envelope head, rendered once for every watcher of the exchange."""
    cached = item.frames.get(SURFACE)
    if cached is None:
        cached = item.frames[SURFACE] = head_bytes(_head(item, reply))
    return cached


def _head(item: Item, reply: Reply) -> Head:
    if item.kind == "delta":
        delta = item.delta()
        return _ok(_chunk(reply, delta.text, delta.usage))
    exchange = item.exchange()
    if exchange.status == "failed":
        return _failed(exchange)
    chunk = _chunk(reply, "", exchange.usage)
    chunk.finished = True
    chunk.content = exchange.reply_text
    chunk.finish_reason = exchange.finish_reason or exchange.status
    return _ok(chunk)


def _chunk(reply: Reply, text: str, usage: domain.Usage) -> Chunk:
    return Chunk(
        conversation_id=reply.conversation_id,
        message_id=reply.message_id,
        delta=text,
        usage=usage_out(usage),
        finished=False,
    )


def _ok(chunk: Chunk) -> Head:
    return Head(code=OK, success=True, message=OK_MESSAGE, data=chunk)


def _failed(exchange: domain.Exchange) -> Head:
    error = exchange.error
    code = _FAILED.get(error.code, CODES["internal"]) if error else CODES["internal"]
    message = error.message if error else "the reply failed"
    return Head(code=code, success=False, message=message, data=None)


def item_frame(item: Item, reply: Reply) -> bytes:
    return event_frame(item.id, item_head(item, reply), reply.trace_id, item.key[0])


async def reply_frames(
    watch: Watch, reply: Reply, on_sent: Callable[[Item], None] | None = None
) -> AsyncIterator[bytes]:
    """``on_sent(item)`` runs once an item's frame is written."""
    async for event in watch.events():
        if isinstance(event, Ping):
            yield PING
        elif isinstance(event, Reconnect):
            return
        else:
            yield item_frame(event, reply)
            if on_sent is not None:
                on_sent(event)


async def no_frames() -> AsyncIterator[bytes]:
    """A resume with nothing after its ``Last-Event-ID``: the stream ends at once."""
    return
    yield  # pragma: no cover
