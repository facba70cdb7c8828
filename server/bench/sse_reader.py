"""Incremental Server-Sent Events parsing, as a browser's EventSource reads the bytes."""

from __future__ import annotations

from typing import Protocol

from server.bench.probe import Tally


class EventHandler(Protocol):
    def on_event(self, event: bytes, data: bytes, event_id: bytes | None, now: float) -> None:
        """One dispatched event; ``now`` is when its last byte arrived."""


class SseReader:
    """Splits a body into events and hands each to ``handler``.

    Counts body bytes into the run's tally, and comment-only frames (keepalives). Accepts
    LF, CRLF and CR line endings; frames may be cut anywhere between reads.
    """

    __slots__ = ("_buf", "_handler", "_tally", "comments")

    def __init__(self, handler: EventHandler, tally: Tally) -> None:
        self._handler = handler
        self._tally = tally
        self._buf = b""
        self.comments = 0

    def feed(self, data: bytes, now: float) -> None:
        self._tally.bytes += len(data)
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = _normalise_line_ends(buf)
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            self._dispatch(buf[start:end], now)
            start = end + 2
        self._buf = buf[start:]

    def _dispatch(self, frame: bytes, now: float) -> None:
        event = b"message"
        data: list[bytes] = []
        event_id: bytes | None = None
        for line in frame.split(b"\n"):
            if not line or line[0] == 58:  # ":" starts a comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
            elif name == b"id":
                event_id = value
        if data:
            self._handler.on_event(event, b"\n".join(data), event_id, now)
        elif event_id is None and event == b"message":
            self.comments += 1
        else:
            self._handler.on_event(event, b"", event_id, now)


def _normalise_line_ends(buf: bytes) -> bytes:
    """Turn CRLF and lone CR into LF; a trailing CR stays, its LF may be in the next read."""
    tail = b""
    if buf.endswith(b"\r"):
        buf, tail = buf[:-1], b"\r"
    return buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
