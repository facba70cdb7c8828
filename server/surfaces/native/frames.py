"""The native stream: Server-Sent Events with ``started``, ``delta``, ``done`` or ``error``.

Each item's frame is rendered once and cached on the item, so every native watcher of an
exchange shares the same bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec

from server.surfaces.native.wire import Delta, ErrorData, exchange_out, usage_out
from streams.events import Item
from streams.watch import Ping, Reconnect, Watch

SURFACE = "native"
PING_FRAME = b": ping\n\n"
_encode = msgspec.json.Encoder().encode


def frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\nevent: {event}\ndata: " if event_id else f"event: {event}\ndata: "
    return head.encode() + data + b"\n\n"


def item_frame(item: Item) -> bytes:
    cached = item.frames.get(SURFACE)
    if cached is None:
        cached = item.frames[SURFACE] = _render(item)
    return cached


def _render(item: Item) -> bytes:
    if item.kind == "delta":
        delta = item.delta()
        return frame(
            "delta", _encode(Delta(delta.seq, delta.text, usage_out(delta.usage))), item.id
        )
    exchange = item.exchange()
    if exchange.status != "failed":
        return frame("done", _encode(exchange_out(exchange)), item.id)
    error = exchange.error
    data = ErrorData(
        code=error.code if error else "internal_error",
        message=error.message if error else "the exchange failed",
        retryable=error.retryable if error else False,
        exchange=exchange_out(exchange),
    )
    return frame("error", _encode(data), item.id)


def retry_frame(retry_ms: int) -> bytes:
    return f"retry: {retry_ms}\n\n".encode()


def reconnect_frame(retry_ms: int) -> bytes:
    return f"event: reconnect\nretry: {retry_ms}\ndata: {{}}\n\n".encode()


def json_frame(event: str, payload: object) -> bytes:
    return frame(event, _encode(payload))


async def native_frames(
    watch: Watch,
    retry_ms: int,
    opening: bytes = b"",
    on_sent: Callable[[Item], None] | None = None,
) -> AsyncIterator[bytes]:
    """``on_sent(item)`` runs once an item's frame is written (the pump asks for the next)."""
    yield retry_frame(retry_ms) + opening
    async for event in watch.events():
        if isinstance(event, Ping):
            yield PING_FRAME
        elif isinstance(event, Reconnect):
            yield reconnect_frame(retry_ms)
        else:
            yield item_frame(event)
            if on_sent is not None:
                on_sent(event)
