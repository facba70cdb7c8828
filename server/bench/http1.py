"""A minimal HTTP/1.1 client connection, written as an asyncio Protocol.

General-purpose clients cost tens of microseconds per received chunk; the load generator has
to read ~100k SSE events per second in one process, so the bytes are parsed right in
``data_received`` and handed to a sink without waking a coroutine per read.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import NamedTuple, Protocol, cast

_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _LENGTH, _UNTIL_EOF, _IDLE = range(8)
_MAX_HEAD = 64 * 1024


class HttpError(Exception):
    """A request that got no complete response; ``kind`` is the error-table key."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class BodySink(Protocol):
    def feed(self, data: bytes, now: float) -> None:
        """Take the next piece of the body; ``now`` is its arrival (``time.monotonic``)."""


class Http1Connection:
    """One keep-alive connection that runs one request at a time and reconnects when closed.

    A body whose content type is ``text/event-stream`` goes to the request's sink as it
    arrives; any other body is collected and returned.
    """

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._wire: _Wire | None = None

    @property
    def is_open(self) -> bool:
        return self._wire is not None and self._wire.is_open

    async def request(
        self,
        head: bytes,
        body: bytes = b"",
        *,
        sink: BodySink | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send a pre-encoded request head (ending in a blank line) and body; await the response.

        A reused connection that the server closed while idle fails before any response byte:
        that request is sent once more on a new connection.
        """
        reused = self.is_open
        try:
            return await self._attempt(head + body, sink, timeout)
        except HttpError as exc:
            wire = self._wire
            if not (reused and exc.kind == "eof" and wire is not None and not wire.got_bytes):
                raise
        return await self._attempt(head + body, sink, timeout)

    async def _attempt(
        self, message: bytes, sink: BodySink | None, timeout: float | None
    ) -> Response:
        wire = self._wire
        if wire is None or not wire.is_open:
            wire = self._wire = await self._connect()
        try:
            async with asyncio.timeout(timeout):
                return await wire.send(message, sink)
        except TimeoutError:
            self.close()
            raise HttpError("timeout") from None

    async def _connect(self) -> _Wire:
        loop = asyncio.get_running_loop()
        try:
            _, wire = await loop.create_connection(
                _Wire,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        except OSError as exc:
            raise HttpError("connect", exc.strerror or type(exc).__name__) from None
        return wire

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None


class _Wire(asyncio.Protocol):
    """The parser of one transport; a new connection gets a new one, so late callbacks of a
    closed transport can never touch the next request."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._sink: BodySink | None = None
        self._buf = b""
        self._state = _IDLE
        self._status = 0
        self._headers: dict[str, str] = {}
        self._parts: list[bytes] = []
        self._remaining = 0
        self._streaming = False
        self._keep_alive = True
        self.got_bytes = False

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, message: bytes, sink: BodySink | None) -> asyncio.Future[Response]:
        assert self._transport is not None and self._state == _IDLE
        self._state = _HEAD
        self._sink = sink
        self._parts = []
        self.got_bytes = False
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._transport.write(message)
        return waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._state == _UNTIL_EOF:
            self._finish()
        elif self._state != _IDLE:
            self._fail(HttpError("eof", "connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        self.got_bytes = True
        try:
            self._parse(data, time.monotonic())
        except Exception as exc:  # malformed HTTP, SSE or JSON: this response is lost
            self._fail(HttpError("protocol", f"{type(exc).__name__}: {exc}"))

    def _parse(self, data: bytes, now: float) -> None:
        pos = 0
        end_of_data = len(data)
        while pos < end_of_data:
            state = self._state
            if state == _CHUNK_DATA:
                take = min(self._remaining, end_of_data - pos)
                self._deliver(data[pos : pos + take], now)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_SIZE:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._keep(data, pos)
                    return
                size = int(data[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_CRLF:
                if end_of_data - pos < 2:
                    self._keep(data, pos)
                    return
                if data[pos : pos + 2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _HEAD:
                eoh = data.find(b"\r\n\r\n", pos)
                if eoh < 0:
                    if end_of_data - pos > _MAX_HEAD:
                        raise ValueError("response head too large")
                    self._keep(data, pos)
                    return
                self._parse_head(data[pos:eoh])
                pos = eoh + 4
            elif state == _LENGTH:
                take = min(self._remaining, end_of_data - pos)
                self._deliver(data[pos : pos + take], now)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._finish()
            elif state == _TRAILERS:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._keep(data, pos)
                    return
                if eol == pos:
                    pos += 2
                    self._finish()
                else:
                    pos = eol + 2
            elif state == _UNTIL_EOF:
                self._deliver(data[pos:], now)
                pos = end_of_data
            else:
                raise ValueError("bytes received outside a response")

    def _keep(self, data: bytes, pos: int) -> None:
        self._buf = data[pos:]

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        self._status = int(status)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._headers = headers
        connection = headers.get("connection", "").lower()
        self._keep_alive = version == "HTTP/1.1" and connection != "close"
        self._streaming = self._sink is not None and headers.get("content-type", "").startswith(
            "text/event-stream"
        )
        self._choose_body_state(headers)

    def _choose_body_state(self, headers: dict[str, str]) -> None:
        if self._status in (204, 304) or 100 <= self._status < 200:
            self._finish()
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = _LENGTH
            if not self._remaining:
                self._finish()
        else:
            self._keep_alive = False
            self._state = _UNTIL_EOF

    def _deliver(self, piece: bytes, now: float) -> None:
        if self._streaming:
            assert self._sink is not None
            self._sink.feed(piece, now)
        else:
            self._parts.append(piece)

    def _finish(self) -> None:
        self._state = _IDLE
        self._sink = None
        response = Response(self._status, self._headers, b"".join(self._parts))
        self._parts = []
        if not self._keep_alive:
            self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, error: HttpError) -> None:
        self._state = _IDLE
        self._sink = None
        self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
