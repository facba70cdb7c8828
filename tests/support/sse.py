"""Read Server-Sent Events the way a browser's EventSource does, one event as soon as it lands.

Parsing follows the WHATWG event-stream rules (CRLF, LF or CR line ends, optional BOM, one
leading space stripped from values, `retry` only when all digits). Unlike a browser, blocks
without data (a lone `: ping` keepalive, a lone `retry:`) are yielded too, so tests can see them.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL_EVENTS = frozenset({"done", "error", "reconnect"})


@dataclass(frozen=True)
class SseEvent:
    """One dispatched block. `event`/`id`/`retry` are None when the block had no such field."""

    id: str | None
    event: str | None
    data: str
    retry: int | None
    comments: tuple[str, ...]
    received_at: float
    has_data: bool = True

    @property
    def type(self) -> str:
        """The type an EventSource listener would see (if `dispatched`)."""
        return self.event or "message"

    @property
    def dispatched(self) -> bool:
        """Whether a browser would fire this block at all (it needs a `data` line)."""
        return self.has_data

    @property
    def is_comment_only(self) -> bool:
        return not self.has_data and self.event is None and self.id is None

    def json(self) -> Any:
        return json.loads(self.data)


def json_data(event: SseEvent) -> Any:
    return event.json()


def delta_text(events: Iterable[SseEvent]) -> str:
    """The reply text the ``delta`` events among ``events`` add up to."""
    return "".join(event.json()["text"] for event in events if event.event == "delta")


class _Block:
    """Fields of the block being read, until the blank line that dispatches it."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.event: str | None = None
        self.data: list[str] = []
        self.retry: int | None = None
        self.comments: list[str] = []

    def empty(self) -> bool:
        return not (self.data or self.comments) and (self.id, self.event, self.retry) == (
            None,
            None,
            None,
        )

    def add(self, line: str) -> None:
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return
        name, colon, value = line.partition(":")
        value = value.removeprefix(" ") if colon else ""
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id" and "\0" not in value:
            self.id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def to_event(self, received_at: float) -> SseEvent:
        return SseEvent(
            id=self.id,
            event=self.event,
            data="\n".join(self.data),
            retry=self.retry,
            comments=tuple(self.comments),
            received_at=received_at,
            has_data=bool(self.data),
        )


class SseParser:
    """Incremental parser: feed it bytes as they arrive, get back the events they complete."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._block = _Block()
        self._started = False
        self._skip_lf = False
        self.last_event_id = ""

    def feed(self, chunk: bytes, received_at: float | None = None) -> list[SseEvent]:
        at = time.monotonic() if received_at is None else received_at
        events: list[SseEvent] = []
        for line in self._lines(self._decoder.decode(chunk)):
            if line:
                self._block.add(line)
            elif not self._block.empty():
                events.append(self._dispatch(at))
        return events

    def _lines(self, text: str) -> list[str]:
        """Complete lines in `text`; the unfinished tail waits for the next chunk."""
        if not text:
            return []
        if not self._started:
            text, self._started = text.removeprefix("\ufeff"), True
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two chunks
        self._skip_lf = text.endswith("\r")
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        lines[0] = self._pending + lines[0]
        self._pending = lines.pop()
        return lines

    def _dispatch(self, received_at: float) -> SseEvent:
        event = self._block.to_event(received_at)
        if event.id is not None:
            self.last_event_id = event.id
        self._block = _Block()
        return event


async def iter_events(
    response: httpx.Response, parser: SseParser | None = None
) -> AsyncIterator[SseEvent]:
    """Yield each event of a streamed response the moment its closing blank line arrives.

    A block left unterminated when the stream ends is dropped, as a browser drops it.
    """
    parser = parser or SseParser()
    async for chunk in response.aiter_bytes():
        for event in parser.feed(chunk, time.monotonic()):
            yield event


async def collect_events(
    response: httpx.Response,
    *,
    terminal: Iterable[str] = TERMINAL_EVENTS,
    max_seconds: float | None = 60.0,
) -> list[SseEvent]:
    """Every block up to and including the first terminal event, or until the stream ends."""
    stop = frozenset(terminal)
    events: list[SseEvent] = []

    async def read() -> None:
        async for event in iter_events(response):
            events.append(event)
            if event.event in stop:
                return

    await asyncio.wait_for(read(), max_seconds)
    return events


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    last_event_id: str | None = None,
) -> AsyncIterator[httpx.Response]:
    """A streamed request with the headers EventSource sends; the body is not read up front."""
    sent = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
    if last_event_id is not None:
        sent["Last-Event-ID"] = last_event_id
    async with client.stream(method, url, json=json_body, headers=sent) as response:
        yield response


async def stream_events(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    last_event_id: str | None = None,
    max_seconds: float | None = 60.0,
) -> tuple[httpx.Response, list[SseEvent]]:
    """Open a stream, read it to its terminal event, return (response, events).

    A response that is not an event stream (an error envelope, a 204) has its body read and
    no events; check `response.status_code` yourself.
    """
    async with open_stream(
        client, method, url, json_body=json_body, headers=headers, last_event_id=last_event_id
    ) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
            return response, []
        return response, await collect_events(response, max_seconds=max_seconds)
