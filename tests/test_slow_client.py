"""A client that stops reading: bounded server memory, merged deltas, a send timeout, resume."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import httpx
import psutil

from streams.backends.synthetic import SyntheticParams, synthetic_reply
from tests.support.servers import ServerFactory, ServerProcess
from tests.support.sse import SseEvent, SseParser, delta_text, stream_events

FAST = SyntheticParams(mode="lorem", tokens_per_second=100_000, reply_tokens=1_000_000)
FAST_AGENT = {
    "agentId": "fast",
    "name": "fast synthetic",
    "model": {
        "provider": "synthetic",
        "name": "synthetic",
        "params": {
            "mode": FAST.mode,
            "tokensPerSecond": FAST.tokens_per_second,
            "replyTokens": FAST.reply_tokens,
            "firstTokenLatencyMs": 0,
        },
    },
}


class RawStream:
    """An HTTP/1.1 SSE request over a socket with a tiny receive buffer, read only on demand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = SseParser()

    @classmethod
    async def post(cls, port: int, path: str, body: dict[str, object]) -> RawStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        payload = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return cls(reader, writer)

    async def events(self) -> AsyncIterator[SseEvent]:
        """Decode the chunked body into SSE events until the stream ends or is cut."""
        while True:
            try:
                size_line = await self.reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            size = int(size_line.strip(), 16)
            if size == 0:
                return
            chunk = await self.reader.readexactly(size + 2)
            for event in self.parser.feed(chunk[:-2], time.monotonic()):
                yield event

    def close(self) -> None:
        self.writer.close()


async def fast_session(http: httpx.AsyncClient) -> str:
    created = await http.post("/v1/agents", json=FAST_AGENT)
    assert created.status_code in (201, 409), created.text
    session = await http.post("/v1/sessions", json={"agentId": "fast", "refreshIntervalMs": 100})
    return str(session.json()["conversationId"])


def rss_mb(server: ServerProcess) -> float:
    return psutil.Process(server.pid).memory_info().rss / 1e6


async def sample_peak_rss(server: ServerProcess, seconds: float) -> float:
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(server))
        await asyncio.sleep(0.2)
    return peak


async def peak_rss_growth(server: ServerProcess, stall: float) -> tuple[float, list[SseEvent]]:
    """Stream the fast reply to a reader that first stalls ``stall`` seconds; RSS peak growth."""
    async with server.client() as http:
        sid = await fast_session(http)
        before = rss_mb(server)
        stream = await RawStream.post(
            server.port, f"/v1/sessions/{sid}/streamingContinue", {"userInput": {"text": "go"}}
        )
        sampler = asyncio.create_task(sample_peak_rss(server, stall + 8))
        await asyncio.sleep(stall)
        events = [e async for e in stream.events()]
        stream.close()
        peak = await sampler
        exchange = (await http.get(f"/v1/sessions/{sid}/exchanges")).json()["data"][-1]
    assert exchange["response"]["text"] == delta_text(events)
    return peak - before, events


async def test_a_stalled_reader_costs_no_more_memory_and_gets_the_exact_text_in_fewer_events(
    server_factory: ServerFactory,
) -> None:
    reading, _ = await peak_rss_growth(server_factory(), stall=0)
    stalled, events = await peak_rss_growth(server_factory(), stall=10)

    deltas = [e for e in events if e.event == "delta"]
    flushes = json.loads(deltas[-1].data)["seq"]
    done = json.loads(events[-1].data)
    expected = synthetic_reply("go", FAST)
    print(
        f"\nreply {len(expected) / 1e6:.1f} MB; stalled reader got {len(deltas)} events for "
        f"{flushes} flushes; RSS growth {stalled:.0f} MB stalled vs {reading:.0f} MB reading"
    )
    assert delta_text(events) == expected == done["response"]["text"]
    assert len(deltas) < flushes, "a stalled reader should receive merged deltas"
    # Undelivered text must be held somewhere (pending items, their encoded frames, the merged
    # text, the transport's buffer): measured about 5 copies of the reply. What must not
    # happen is growth without bound, such as a frame queued per delta that never drains.
    reply_mb = len(expected) / 1e6
    assert stalled < reading + 8 * reply_mb, "a stalled reader's memory must stay bounded"


async def test_a_reader_stuck_past_the_send_timeout_is_cut_off_and_can_resume(
    server_factory: ServerFactory,
) -> None:
    server = server_factory({"PARLEY_SEND_TIMEOUT_SECONDS": "1"})
    async with server.client() as http:
        sid = await fast_session(http)
        stream = await RawStream.post(
            server.port, f"/v1/sessions/{sid}/streamingContinue", {"userInput": {"text": "go"}}
        )
        await asyncio.sleep(9)  # long enough to fill the kernel's socket buffers
        first = [e async for e in stream.events()]
        stream.close()
        last_id = next(e.id for e in reversed(first) if e.id)
        _, rest = await stream_events(
            http, "GET", f"/v1/sessions/{sid}/stream", last_event_id=last_id
        )

    assert not any(e.event in ("done", "error") for e in first), "the stuck stream was cut"
    assert rest[-1].event == "done"
    assert delta_text(first) + delta_text(rest) == synthetic_reply("go", FAST)
    assert "client stopped reading" in server.stderr_text()
