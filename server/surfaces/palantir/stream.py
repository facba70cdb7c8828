"""streamingContinue's body: the reply's raw UTF-8 markdown, no framing, at the interval.

There is nothing to frame a keepalive or an end event with, so idle periods send nothing
and the stream simply ends after the last text (or at shutdown).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from streams.events import Item
from streams.watch import Reconnect, Watch

SURFACE = "palantir"
HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


def item_bytes(item: Item) -> bytes:
    cached = item.frames.get(SURFACE)
    if cached is None:
        cached = item.frames[SURFACE] = item.delta().text.encode()
    return cached


async def text_chunks(
    watch: Watch, on_sent: Callable[[Item], None] | None = None
) -> AsyncIterator[bytes]:
    async for event in watch.events():
        if isinstance(event, Reconnect):
            return
        if isinstance(event, Item) and event.kind == "delta":
            yield item_bytes(event)
            if on_sent is not None:
                on_sent(event)
