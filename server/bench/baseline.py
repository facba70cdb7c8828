"""The bare baseline: the ceiling of Litestar + uvicorn SSE on this machine.

One SSE endpoint at Parley's streamingContinue path, with no Redis, no engine and no auth. It
sends the events a Parley stream would send for the same synthetic model and refresh
interval: same shapes, same sizes, same timing (the leading-edge throttle is replayed from
the model's token schedule). Parley's figures divided by these say what the engine costs.

``writer`` picks what writes the events: Litestar's ``Stream`` (the default), Parley's own
streamed response (``server.streaming``), or sse-starlette's ``EventSourceResponse``, so the
SSE writers can be compared on the same load.

Run with ``uvicorn server.bench.baseline:create_baseline_app --factory``; the profile comes
from ``PARLEY_BENCH_BASELINE`` (JSON of :class:`BaselineProfile`) when none is passed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal, cast

import msgspec
from litestar import Litestar, get, post
from litestar.response import Stream
from litestar.types import ASGIApp

from server.streaming import EVENT_STREAM_HEADERS, OpenStreams, StreamResponse
from server.surfaces.native.wire import Delta, Exchange, Text, usage_out
from streams.backends.synthetic import SyntheticParams, reply_pieces
from streams.tokens import count_tokens
from streams.types import Usage

PROFILE_ENV = "PARLEY_BENCH_BASELINE"
STREAMING_CONTINUE = "/v1/sessions/{conversation_id:str}/streamingContinue"
RETRY_MS = 2000
Writer = Literal["litestar", "parley", "sse-starlette"]
Event = tuple[str, bytes, str | None]  # event name, data, id


class BaselineProfile(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    params: SyntheticParams = msgspec.field(default_factory=SyntheticParams)
    refresh_interval_ms: int = 100
    writer: Writer = "litestar"


class ContinueBody(msgspec.Struct, rename="camel"):
    user_input: Text


def delta_schedule(
    pieces: list[str], interval_s: float, token_step_s: float
) -> list[tuple[float, str, int]]:
    """Group model tokens into deltas as Parley's flush policy does.

    Token ``i`` is available at ``i * token_step_s``. A token that finds nothing pending and
    the last flush at least one interval old goes out at once (leading edge); otherwise it
    waits for the next tick, one interval after the last flush. The last delta keeps the
    interval too. Returns ``(offset_s, text, tokens)`` per delta.
    """
    deltas: list[tuple[float, str, int]] = []
    last_flush = -float("inf")
    pending: list[str] = []
    for index, piece in enumerate(pieces):
        now = index * token_step_s
        if pending and now >= last_flush + interval_s:
            last_flush += interval_s
            deltas.append((last_flush, "".join(pending), len(pending)))
            pending = []
        if not pending and now >= last_flush + interval_s:
            last_flush = now
            deltas.append((now, piece, 1))
        else:
            pending.append(piece)
    if pending:
        at = max((len(pieces) - 1) * token_step_s, last_flush + interval_s)
        deltas.append((at, "".join(pending), len(pending)))
    return deltas


def _frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\nevent: {event}\n" if event_id else f"event: {event}\n"
    return head.encode() + b"data: " + data + b"\n\n"


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def events(
    conversation_id: str, text: str, params: SyntheticParams, refresh_interval_ms: int
) -> AsyncIterator[Event]:
    """The events of one Parley stream for this model and interval, each at its time."""
    exchange_id = uuid.uuid4().hex
    created = _stamp()
    usage = Usage(input_tokens=count_tokens(text))
    started = {"exchangeId": exchange_id, "conversationId": conversation_id}
    yield "started", msgspec.json.encode(started), None
    schedule = delta_schedule(
        reply_pieces(text, params), refresh_interval_ms / 1000, 1 / params.tokens_per_second
    )
    start = time.monotonic() + params.first_token_latency_ms / 1000
    seq = 0
    for offset, piece, tokens in schedule:
        delay = start + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        seq += 1
        usage.output_tokens += tokens
        delta = Delta(seq=seq, text=piece, usage=usage_out(usage.totalled()))
        yield "delta", msgspec.json.encode(delta), f"{time.time_ns() // 1_000_000}-{seq}"
    exchange = Exchange(
        exchange_id=exchange_id,
        conversation_id=conversation_id,
        user_input=Text(text),
        response=Text("".join(piece for _, piece, _ in schedule)),
        status="completed",
        finish_reason="stop",
        usage=usage_out(usage.totalled()),
        created_at=created,
        completed_at=_stamp(),
    )
    done_id = f"{time.time_ns() // 1_000_000}-{seq + 1}"
    yield "done", msgspec.json.encode(exchange), done_id


async def _frames(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    opening = f"retry: {RETRY_MS}\n".encode()
    async for event, data, event_id in events:
        yield opening + _frame(event, data, event_id)
        opening = b""


def _sse_starlette(events: AsyncIterator[Event]) -> ASGIApp:
    """Imported here only: sse-starlette patches uvicorn's signal handling at import."""
    from sse_starlette import EventSourceResponse, ServerSentEvent

    async def sent() -> AsyncIterator[ServerSentEvent]:
        retry: int | None = RETRY_MS
        async for event, data, event_id in events:
            yield ServerSentEvent(data=data.decode(), event=event, id=event_id, retry=retry)
            retry = None

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    # Starlette's and Litestar's ASGI types differ only in how precisely they are written.
    return cast(ASGIApp, EventSourceResponse(sent(), headers=headers, ping=15))


def create_baseline_app(profile: BaselineProfile | None = None) -> Litestar:
    """Build the baseline app; without a profile, read it from ``PARLEY_BENCH_BASELINE``."""
    if profile is None:
        raw = os.environ.get(PROFILE_ENV)
        profile = msgspec.json.decode(raw, type=BaselineProfile) if raw else BaselineProfile()
    chosen = profile
    open_streams = OpenStreams(send_timeout=30.0)

    def stream(conversation_id: str, data: ContinueBody) -> AsyncIterator[Event]:
        text = data.user_input.text
        return events(conversation_id, text, chosen.params, chosen.refresh_interval_ms)

    @post(STREAMING_CONTINUE, status_code=200)
    async def with_litestar(conversation_id: str, data: ContinueBody) -> Stream:
        return Stream(
            _frames(stream(conversation_id, data)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @post(STREAMING_CONTINUE, status_code=200)
    async def with_parley(conversation_id: str, data: ContinueBody) -> ASGIApp:
        frames = _frames(stream(conversation_id, data))
        return StreamResponse(frames, headers=EVENT_STREAM_HEADERS, streams=open_streams)

    @post(STREAMING_CONTINUE, status_code=200)
    async def with_sse_starlette(conversation_id: str, data: ContinueBody) -> ASGIApp:
        return _sse_starlette(stream(conversation_id, data))

    handlers = {
        "litestar": with_litestar,
        "parley": with_parley,
        "sse-starlette": with_sse_starlette,
    }
    streaming_continue = handlers[chosen.writer]

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[streaming_continue, healthz], openapi_config=None)
