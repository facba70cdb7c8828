"""Parley with sse-starlette's ``EventSourceResponse`` as its stream writer, for the benchmark.

Run with ``uvicorn server.bench.sse_writer:create_app --factory`` (settings from the
environment, as for ``server.app:create_app``). Everything but the writer is the normal app:
the same surfaces, frames, hub, engine and Redis. The writer keeps the guarantees of
``server.streaming.StreamResponse``, each with sse-starlette's own feature where it has one:

- Frames are encoded once by the surfaces and handed over as bytes; sse-starlette's
  ``ensure_bytes`` passes ``bytes`` through untouched, so each frame is still one send.
  The response carries exactly Parley's headers (``raw_headers`` is replaced after
  construction): sse-starlette's defaults would add ``Connection: keep-alive`` and turn
  ``Cache-Control`` into ``no-store``, and Palantir's stream is not even an event stream.
- A client that stops reading is cut off by sse-starlette's ``send_timeout`` (the app's
  ``PARLEY_SEND_TIMEOUT_SECONDS``); the ``SendTimeoutError`` it raises is caught here and
  logged as ``stream closed: client stopped reading``, like the default writer.
- Keepalive pings, and the goodbye on SIGTERM (native's ``event: reconnect``, each
  surface's own), come from the frames iterators as with the default writer: the hub's
  ticker yields a ping on an idle stream, and the drain that Parley starts at the SIGTERM
  itself (``server.app._watch_sigterm``) makes every watch yield its goodbye and end.
  So sse-starlette's ``ping`` is off (``ping=0``): its pings are timed per stream and sent
  whether or not the stream is idle, in one comment format for every surface (into
  Palantir's ``application/octet-stream`` body too), and would double the surfaces' own.
  ``shutdown_event`` is not passed either: Parley's goodbye is already on its way when
  sse-starlette's watcher notices the shutdown (it polls every 0.5 s). What is used is
  ``shutdown_grace_period`` (the send timeout): once sse-starlette sees the shutdown, a
  stream gets that long to write its goodbye before its task group is cancelled, so the
  library never cuts a goodbye short; a reader too slow to take it is the send timeout's.
- ``on_close(finished)`` runs however the response ends (``finished``: the last, empty
  body was sent), and the response is counted in ``OpenStreams`` while it runs.

What it costs, per stream: an anyio task group with three tasks (the sender, a disconnect
listener, a shutdown listener that then polls every 0.1 s for the grace period) where
``StreamResponse`` has one extra task, and an anyio cancel scope with its timer around every
single send where ``StreamResponse`` relies on one watchdog scan per process
(``OpenStreams.watch`` still runs, over responses that have nothing for it to check), plus a
``logger.debug`` call per frame and, at construction, Starlette's header building and an
``anyio.Lock``. Per process: a shutdown watcher task polling every 0.5 s, and the
import-time patch of ``uvicorn.Server.handle_exit`` (a class attribute: every uvicorn server
in the process). With one worker, uvicorn imports the app before it installs its handler and
the patch takes effect; with ``--workers`` above one, each worker imports the app after
that, the patch comes too late, and sse-starlette's fallback (finding uvicorn's server
through the SIGTERM handler's ``__self__``) is defeated by Parley's own SIGTERM handler, so
sse-starlette would never see the shutdown. Hence this factory also sets
``AppStatus.should_exit`` at SIGTERM (``_signal_sse_starlette``), the flag sse-starlette
documents for apps that drive its shutdown themselves; it is process-wide and never reset,
which is fine in a server process.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import cast

from litestar import Litestar
from sse_starlette.sse import AppStatus, EventSourceResponse, SendTimeoutError
from starlette.types import Receive, Scope, Send

from server import app as parley_app
from server.settings import Settings
from server.streaming import Headers, OpenStreams, StreamWriter, close_frames

log = logging.getLogger("parley.streaming")  # the default writer's logger: same log lines


class SseStarletteResponse(EventSourceResponse):
    """A :class:`server.streaming.StreamWriter` built on ``EventSourceResponse``."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        headers: Headers,
        streams: OpenStreams,
        on_close: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(
            frames,
            ping=0,
            send_timeout=streams.send_timeout,
            shutdown_grace_period=streams.send_timeout,
        )
        self.raw_headers = list(headers)
        self._frames = frames
        self._streams = streams
        self._on_close = on_close
        self.finished = False
        self.cut_off = False

    def check_send(self, now: float, timeout: float) -> None:
        """Nothing for ``OpenStreams``' watchdog: sse-starlette times every send itself."""

    async def _stream_response(self, send: Send) -> None:
        await super()._stream_response(send)
        self.finished = True  # returns only after the final, empty body went out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._streams.add(self)
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            self.cut_off = True
            log.warning("stream closed: client stopped reading")
        finally:
            self._streams.discard(self)
            await close_frames(self._frames)  # sse-starlette closes it only after a failed send
            if self._on_close is not None:
                self._on_close(self.finished)


WRITER = cast(StreamWriter, SseStarletteResponse)  # its __call__ takes Starlette's types


def _signal_sse_starlette(_: Litestar) -> None:
    """Set sse-starlette's shutdown flag at SIGTERM, then run the handler installed before
    (Parley's drain, then uvicorn's). Runs after the app's lifespan installed its own."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        AppStatus.should_exit = True
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def create_app(settings: Settings | None = None) -> Litestar:
    """Parley, its streams written by :class:`SseStarletteResponse`."""
    app = parley_app.create_app(settings, writer=WRITER)
    app.on_startup.append(_signal_sse_starlette)
    return app
