"""A streamed response that any surface feeds with its own frames.

We write our own small ASGI response rather than use Litestar's ``ServerSentEvent`` or
sse-starlette: frames are encoded once per event and shared by every watcher of a surface,
a client that stops reading is cut off after a send timeout, and on shutdown a stream ends
with the surface's own goodbye instead of being dropped. Each frame is one send.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from litestar.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("parley.streaming")

Headers = Sequence[tuple[bytes, bytes]]
EVENT_STREAM = "text/event-stream"
EVENT_STREAM_HEADERS: Headers = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
)


class Watched(Protocol):
    """A response in flight, as the send watchdog sees it."""

    def check_send(self, now: float, timeout: float) -> None: ...


class StreamWriter(Protocol):
    """What builds a streamed response: :class:`StreamResponse` unless the app is given another.

    It must send ``frames`` as they are, register with ``streams`` while it runs, cut off a
    client that stops reading after ``streams.send_timeout``, and call ``on_close(finished)``
    however it ends.
    """

    def __call__(
        self,
        frames: AsyncIterator[bytes],
        *,
        headers: Headers,
        streams: OpenStreams,
        on_close: Callable[[bool], None] | None = None,
    ) -> ASGIApp: ...


class OpenStreams:
    """Every streamed response in flight: how many there are, and a watchdog for stuck sends.

    One scan a fraction of a second apart replaces a timer around every single send: a
    response whose current send has not finished for ``send_timeout`` is cut off.
    ``writer`` builds the responses (:meth:`respond`); it is chosen where the app is built.
    """

    def __init__(self, send_timeout: float, writer: StreamWriter | None = None) -> None:
        self.send_timeout = send_timeout
        self._writer: StreamWriter = writer or StreamResponse
        self._open: set[Watched] = set()

    def __len__(self) -> int:
        return len(self._open)

    def respond(
        self,
        frames: AsyncIterator[bytes],
        *,
        headers: Headers,
        on_close: Callable[[bool], None] | None = None,
    ) -> ASGIApp:
        """The response streaming ``frames``; ``on_close(finished)`` runs however it ends."""
        return self._writer(frames, headers=headers, streams=self, on_close=on_close)

    def add(self, response: Watched) -> None:
        self._open.add(response)

    def discard(self, response: Watched) -> None:
        self._open.discard(response)

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.send_timeout / 2))
            now = loop.time()
            for response in list(self._open):
                response.check_send(now, self.send_timeout)


class StreamResponse:
    """An ASGI app streaming ``frames``; ``on_close(finished)`` runs however it ends.

    A client that goes away, or one cut off by the send watchdog, stops the stream by
    cancelling this task; the cancellation is absorbed here, so the server logs nothing.
    """

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        headers: Headers,
        streams: OpenStreams,
        on_close: Callable[[bool], None] | None = None,
    ) -> None:
        self._frames = frames
        self._headers = list(headers)
        self._streams = streams
        self._on_close = on_close
        self._sends = 0
        self._sent = 0
        self._stuck_send = 0
        self._stuck_since = 0.0
        self._task: asyncio.Task[object] | None = None
        self._stopping = False
        self._over = False
        self.cut_off = False

    def check_send(self, now: float, timeout: float) -> None:
        if self._sends == self._sent:
            return
        if self._stuck_send != self._sends:
            self._stuck_send, self._stuck_since = self._sends, now
        elif now - self._stuck_since >= timeout:
            self.cut_off = True
            self._stop()

    def _stop(self) -> None:
        if self._task is not None and not self._stopping and not self._over:
            self._stopping = True
            self._task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False
        self._task = asyncio.current_task()
        self._streams.add(self)
        listener = asyncio.create_task(self._listen(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            finished = await self._pump(send)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            self._task.uncancel()  # type: ignore[union-attr]
        finally:
            self._over = True
            listener.cancel()
            self._streams.discard(self)
            if self.cut_off:
                log.warning("stream closed: client stopped reading")
            await close_frames(self._frames)
            if self._on_close is not None:
                self._on_close(finished)

    async def _listen(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._stop()
                return

    async def _pump(self, send: Send) -> bool:
        async for chunk in self._frames:
            self._sends += 1
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._sent = self._sends
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True


async def close_frames(frames: AsyncIterator[bytes]) -> None:
    """Close a frames iterator that can be closed, so its watch lets go of its subscription."""
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()
