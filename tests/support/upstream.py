"""A real local HTTP server that streams like OpenAI Chat Completions and Anthropic Messages.

It runs an asyncio loop of its own in a daemon thread, writes raw HTTP/1.1 (chunked bodies,
keep-alive) and sends the event streams byte for byte as the real APIs do:

- ``POST /v1/chat/completions``: ``data: {chat.completion.chunk}`` events, a final usage-only
  chunk with ``"choices":[]``, then ``data: [DONE]``.
- ``POST /v1/messages``: ``event: message_start`` / ``content_block_start`` / ``ping`` /
  ``content_block_delta`` / ``content_block_stop`` / ``message_delta`` (cumulative usage) /
  ``message_stop``, and ``event: error`` for an error mid-stream.

Each request takes the next queued :class:`Reply` (or ``default``), whose knobs set delays,
error statuses, and faults mid-reply. Every request is recorded with its headers and body,
so tests can check the context Parley sent and the credentials it used.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from types import TracebackType
from typing import Any, Literal

from streams.backends.base import BackendError, Chunk, Message, ModelRequest, ModelSpec, Provider

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
}
_REASONS |= {500: "Internal Server Error", 503: "Service Unavailable", 529: "Overloaded"}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}
_OPENAI_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_ids = itertools.count(1)


@dataclass
class Reply:
    """What the fake upstream does for one request.

    Faults happen after that many reply pieces were sent (``hang_after=0`` hangs before the
    first token): ``error_after`` sends the API's error object, ``drop_after`` closes the
    connection mid-body, ``malformed_after`` sends broken JSON, ``hang_after`` goes silent,
    ``end_after`` ends the body cleanly without the closing events.
    Usage: ``input_tokens`` is uncached input; OpenAI's ``prompt_tokens`` is reported as
    ``input_tokens + cached_tokens``. ``output_tokens`` defaults to one per piece.
    Anthropic's cache writes are reported as their total and, unless ``cache_breakdown`` is
    False, split by TTL (``cache_creation``) in ``message_start``.
    """

    pieces: Sequence[str] = ("Hello", ",", " world", "!")
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    headers_delay: float = 0.0
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    retry_after: str | None = None
    error_after: int | None = None
    drop_after: int | None = None
    malformed_after: int | None = None
    hang_after: int | None = None
    end_after: int | None = None
    input_tokens: int = 12
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    cache_breakdown: bool = True
    include_usage: bool = True
    finish_reason: str | None = None

    @property
    def output(self) -> int:
        return len(self.pieces) if self.output_tokens is None else self.output_tokens

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass
class Recorded:
    """One request the fake upstream received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)
    client_closed_at: float | None = None
    """When the client hung up before the reply was complete, if it did."""


@dataclass
class _Step:
    kind: Literal["send", "sleep", "drop", "hang"]
    data: bytes = b""
    seconds: float = 0.0


def _send(data: bytes) -> _Step:
    return _Step("send", data=data)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else _compact(data)
    return f"{head}data: {body}\n\n".encode()


class _Dialect:
    """How one upstream API frames its stream, its errors and its faults."""

    def steps(self, reply: Reply, request: Recorded) -> list[_Step]:
        model = str((request.body or {}).get("model", "unknown"))
        steps = self.opening(reply, model)
        for index, piece in enumerate(reply.pieces):
            fault = self._fault(reply, index, model)
            if fault is not None:
                return steps + fault
            delay = reply.first_token_delay if index == 0 else reply.token_delay
            if delay:
                steps.append(_Step("sleep", seconds=delay))
            steps.append(_send(self.text_event(piece, model)))
        fault = self._fault(reply, len(reply.pieces), model)
        if fault is not None:
            return steps + fault
        return steps + self.closing(reply, model)

    def _fault(self, reply: Reply, sent: int, model: str) -> list[_Step] | None:
        if reply.hang_after == sent:
            return [_Step("hang")]
        if reply.drop_after == sent:
            return [_Step("drop")]
        if reply.error_after == sent:
            return [_send(self.stream_error(reply))]
        if reply.malformed_after == sent:
            return [_send(self.malformed(model))]
        if reply.end_after == sent:
            return []
        return None

    def opening(self, reply: Reply, model: str) -> list[_Step]:
        raise NotImplementedError

    def text_event(self, piece: str, model: str) -> bytes:
        raise NotImplementedError

    def closing(self, reply: Reply, model: str) -> list[_Step]:
        raise NotImplementedError

    def stream_error(self, reply: Reply) -> bytes:
        raise NotImplementedError

    def malformed(self, model: str) -> bytes:
        raise NotImplementedError

    def error_body(self, reply: Reply) -> bytes:
        raise NotImplementedError

    def headers(self) -> list[tuple[str, str]]:
        raise NotImplementedError


class _OpenAI(_Dialect):
    def __init__(self) -> None:
        self.id = f"chatcmpl-parleytest{next(_ids):06d}"
        self.created = int(time.time())

    def _chunk(self, model: str, choices: list[Any], usage: Any = None) -> bytes:
        return _sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_parley0test",
                "choices": choices,
                "usage": usage,
            }
        )

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    def opening(self, reply: Reply, model: str) -> list[_Step]:
        role = {"role": "assistant", "content": "", "refusal": None}
        return [_send(self._chunk(model, self._choice(role)))]

    def text_event(self, piece: str, model: str) -> bytes:
        return self._chunk(model, self._choice({"content": piece}))

    def closing(self, reply: Reply, model: str) -> list[_Step]:
        steps = [_send(self._chunk(model, self._choice({}, reply.finish_reason or "stop")))]
        if reply.include_usage:
            steps.append(_send(self._chunk(model, [], self._usage(reply))))
        return [*steps, _send(b"data: [DONE]\n\n")]

    def _usage(self, reply: Reply) -> dict[str, Any]:
        prompt = reply.input_tokens + reply.cached_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": reply.output,
            "total_tokens": prompt + reply.output,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _error(self, reply: Reply, status: int) -> dict[str, Any]:
        return {
            "message": reply.error_message
            or "The server had an error while processing your request.",
            "type": reply.error_type or _OPENAI_ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": _OPENAI_ERROR_CODES.get(status),
        }

    def stream_error(self, reply: Reply) -> bytes:
        return _sse({"error": self._error(reply, 500)})

    def malformed(self, model: str) -> bytes:
        cut = f'{{"id":"{self.id}","object":"chat.completion.chunk","choices":[{{"index'
        return f"data: {cut}\n\n".encode()

    def error_body(self, reply: Reply) -> bytes:
        return (json.dumps({"error": self._error(reply, reply.status)}, indent=4) + "\n").encode()

    def headers(self) -> list[tuple[str, str]]:
        return [("x-request-id", f"req_{self.id}"), ("openai-processing-ms", "7")]


class _Anthropic(_Dialect):
    def __init__(self) -> None:
        self.id = f"msg_parleytest{next(_ids):06d}"

    def _usage(self, reply: Reply, output: int) -> dict[str, Any]:
        return {
            "input_tokens": reply.input_tokens,
            "cache_creation_input_tokens": reply.cache_creation_5m + reply.cache_creation_1h,
            "cache_read_input_tokens": reply.cached_tokens,
            "output_tokens": output,
        }

    def opening(self, reply: Reply, model: str) -> list[_Step]:
        usage = self._usage(reply, 1)
        if reply.cache_breakdown:
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": reply.cache_creation_5m,
                "ephemeral_1h_input_tokens": reply.cache_creation_1h,
            }
        usage["service_tier"] = "standard"
        message: dict[str, Any] = {
            "model": model,
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        return [
            _send(_sse({"type": "message_start", "message": message}, "message_start")),
            _send(_sse(block, "content_block_start")),
            _send(_sse('{"type": "ping"}', "ping")),
        ]

    def text_event(self, piece: str, model: str) -> bytes:
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": piece},
        }
        return _sse(delta, "content_block_delta")

    def closing(self, reply: Reply, model: str) -> list[_Step]:
        stop = {"stop_reason": reply.finish_reason or "end_turn", "stop_sequence": None}
        delta = {"type": "message_delta", "delta": stop, "usage": self._usage(reply, reply.output)}
        return [
            _send(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop")),
            _send(_sse(delta, "message_delta")),
            _send(_sse({"type": "message_stop"}, "message_stop")),
        ]

    def _error(self, reply: Reply, status: int) -> dict[str, Any]:
        kind = reply.error_type or _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {
            "type": "error",
            "error": {"type": kind, "message": reply.error_message or "Overloaded"},
        }

    def stream_error(self, reply: Reply) -> bytes:
        return _sse(self._error(reply, 529), "error")

    def malformed(self, model: str) -> bytes:
        cut = b'{"type":"content_block_delta","index":0,"delta":{'
        return b"event: content_block_delta\ndata: " + cut + b"\n\n"

    def error_body(self, reply: Reply) -> bytes:
        body = self._error(reply, reply.status) | {"request_id": f"req_{self.id}"}
        return _compact(body).encode()

    def headers(self) -> list[tuple[str, str]]:
        return [("request-id", f"req_{self.id}"), ("cache-control", "no-cache")]


class UpstreamServer:
    """The fake upstream. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self) -> None:
        self.default = Reply()
        self.requests: list[Recorded] = []
        self.port = 0
        self._replies: deque[Reply] = deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then with ``default``."""
        self._replies.extend(replies)

    def reset(self) -> None:
        self._replies.clear()
        self.requests.clear()
        self.default = Reply()

    def start(self) -> UpstreamServer:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self._connections.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close."""
        request = await _read_request(reader)
        self.requests.append(request)
        reply = self._replies.popleft() if self._replies else replace(self.default)
        dialect: _Dialect
        if request.path.endswith("/chat/completions"):
            dialect = _OpenAI()
        elif request.path.endswith("/v1/messages"):
            dialect = _Anthropic()
        else:
            writer.write(_response_head(404, [("content-length", "0")]))
            await writer.drain()
            return True
        if reply.headers_delay:
            await asyncio.sleep(reply.headers_delay)
        if reply.status != 200:
            await _write_error(writer, dialect, reply)
            return True
        try:
            return await _write_stream(
                reader, writer, dialect.steps(reply, request), dialect.headers()
            )
        except ConnectionError:
            request.client_closed_at = time.monotonic()
            raise


async def _read_request(reader: asyncio.StreamReader) -> Recorded:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    body = json.loads(raw) if raw else None
    return Recorded(method=method, path=target.split("?", 1)[0], headers=headers, body=body)


def _response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"date: {formatdate(usegmt=True)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write_error(writer: asyncio.StreamWriter, dialect: _Dialect, reply: Reply) -> None:
    body = dialect.error_body(reply)
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    if reply.retry_after is not None:
        headers.append(("retry-after", reply.retry_after))
    writer.write(_response_head(reply.status, headers + dialect.headers()) + body)
    await writer.drain()


async def _write_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    steps: list[_Step],
    extra_headers: list[tuple[str, str]],
) -> bool:
    headers = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("transfer-encoding", "chunked"),
        ("connection", "keep-alive"),
        *extra_headers,
    ]
    writer.write(_response_head(200, headers))
    await writer.drain()
    for step in steps:
        if step.kind == "sleep":
            await asyncio.sleep(step.seconds)
        elif step.kind == "send":
            writer.write(f"{len(step.data):x}\r\n".encode() + step.data + b"\r\n")
            await writer.drain()
        elif step.kind == "drop":
            return False
        else:
            await reader.read()  # hang until the client gives up and closes
            raise ConnectionResetError("the client closed the connection")
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


@dataclass
class Outcome:
    """Everything a backend yielded for one request, and the error it ended with, if any."""

    chunks: list[Chunk]
    error: BackendError | None

    @property
    def text(self) -> str:
        return "".join(chunk.text for chunk in self.chunks)

    @property
    def final(self) -> Chunk:
        return self.chunks[-1]


async def drain(chunks: AsyncIterator[Chunk]) -> Outcome:
    seen: list[Chunk] = []
    try:
        async for chunk in chunks:
            seen.append(chunk)
    except BackendError as error:
        return Outcome(seen, error)
    return Outcome(seen, None)


def model_request(
    provider: Provider,
    *turns: str,
    instructions: str = "You are terse.",
    name: str = "test-model",
    params: dict[str, Any] | None = None,
) -> ModelRequest:
    """A request whose turns alternate user / assistant, ending with the new user turn."""
    roles: list[Literal["user", "assistant"]] = ["user", "assistant"]
    start = (len(turns) + 1) % 2
    messages = [Message(role=roles[(start + i) % 2], text=text) for i, text in enumerate(turns)]
    return ModelRequest(
        instructions=instructions,
        messages=messages,
        model=ModelSpec(provider=provider, name=name, params=params or {}),
    )
