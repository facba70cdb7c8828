"""Anthropic Messages streaming, through the official ``anthropic`` SDK's raw stream events.

Usage arrives twice: ``message_start`` carries the input side (with cache reads and cache
writes), and ``message_delta`` carries cumulative totals, so each report overwrites the
fields it has rather than adding to them. An ``error`` event mid-stream becomes a
:class:`BackendError` with the upstream's own message.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anthropic
import httpx2
import msgspec
from anthropic.types import MessageParam, RawMessageStreamEvent

from streams.backends.base import BackendError, Chunk, Message, ModelRequest
from streams.backends.params import AnthropicParams
from streams.backends.policy import (
    UpstreamPolicy,
    parse_retry_after,
    redact,
    status_error,
    with_retries,
)
from streams.types import Usage

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STREAM_ERROR_CODES = {
    "overloaded_error": ("upstream_server_error", True),
    "api_error": ("upstream_server_error", True),
    "rate_limit_error": ("upstream_rate_limited", True),
    "timeout_error": ("upstream_timeout", True),
}
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class UsageReport:
    """The upstream's latest cumulative counters; each report overwrites what it carries."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_USAGE_FIELDS, 0)
        self.cache_creation_5m = 0
        self.cache_creation_1h = 0

    def update(self, usage: Any) -> Usage:
        for name in _USAGE_FIELDS:
            value = getattr(usage, name, None)
            if isinstance(value, int):
                self.counts[name] = value
        self._update_breakdown(getattr(usage, "cache_creation", None))
        return self.usage()

    def _update_breakdown(self, breakdown: Any) -> None:
        if breakdown is None:
            return
        five = getattr(breakdown, "ephemeral_5m_input_tokens", None)
        hour = getattr(breakdown, "ephemeral_1h_input_tokens", None)
        self.cache_creation_5m = five if isinstance(five, int) else self.cache_creation_5m
        self.cache_creation_1h = hour if isinstance(hour, int) else self.cache_creation_1h

    def usage(self) -> Usage:
        """The counters with the cache writes' TTL split kept; writes the breakdown leaves
        out count as 5-minute ones (see :class:`Usage`)."""
        # Cache writes are the TTL breakdown's sum when only the breakdown was reported.
        creation = self.counts["cache_creation_input_tokens"]
        creation = creation or self.cache_creation_5m + self.cache_creation_1h
        return Usage(
            input_tokens=self.counts["input_tokens"],
            output_tokens=self.counts["output_tokens"],
            cache_read_input_tokens=self.counts["cache_read_input_tokens"],
            cache_creation_input_tokens=creation,
            cache_creation_5m_input_tokens=self.cache_creation_5m,
            cache_creation_1h_input_tokens=self.cache_creation_1h,
        ).totalled()


def build_messages(messages: list[Message]) -> list[MessageParam]:
    """The turns in order, as the Messages API accepts them.

    Empty turns (say, a cancelled reply that produced nothing) are left out, and turns of the
    same role that end up next to each other are joined, since the API wants them to
    alternate and refuses empty text.
    """
    turns: list[Message] = []
    for message in messages:
        if not message.text:
            continue
        if turns and turns[-1].role == message.role:
            turns[-1] = Message(role=message.role, text=f"{turns[-1].text}\n\n{message.text}")
        else:
            turns.append(message)
    return [_message_param(turn) for turn in turns]


def _message_param(turn: Message) -> MessageParam:
    if turn.role == "user":
        return {"role": "user", "content": turn.text}
    return {"role": "assistant", "content": turn.text}


class AnthropicMessagesBackend:
    """One upstream endpoint (base URL + key); serves every agent whose model lives there.

    The key goes to the SDK client only; error messages are scrubbed of it before they
    leave, and the SDK is never left to read credentials from the environment itself.
    """

    def __init__(
        self, *, base_url: str, api_key: str, policy: UpstreamPolicy | None = None
    ) -> None:
        self._policy = policy or UpstreamPolicy()
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=anthropic.Timeout(None, connect=self._policy.connect_timeout),
            open_telemetry=False,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        return with_retries(lambda: self._attempt(request), self._policy)

    async def _attempt(self, request: ModelRequest) -> AsyncGenerator[Chunk, None]:
        params = _params(request)
        fields = params.request_fields()
        try:
            stream = await self._client.messages.create(
                model=request.model.name,
                max_tokens=params.max_output_tokens,
                system=request.instructions or anthropic.omit,
                messages=build_messages(request.messages),
                stream=True,
                extra_body=fields or None,
            )
        except anthropic.AnthropicError as error:
            raise self._error(error, streaming=False) from None
        async with stream, aclosing(self._read(stream)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _read(
        self, stream: AsyncIterator[RawMessageStreamEvent]
    ) -> AsyncGenerator[Chunk, None]:
        report = UsageReport()
        events = 0
        stop_reason: str | None = None
        stopped = False
        try:
            async for event in stream:
                events += 1
                if event.type == "message_start":
                    yield Chunk(usage=report.update(event.message.usage))
                elif event.type == "content_block_delta":
                    text = (
                        getattr(event.delta, "text", None)
                        if event.delta.type == "text_delta"
                        else None
                    )
                    yield Chunk(text=text or "")
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    yield Chunk(usage=report.update(event.usage))
                elif event.type == "message_stop":
                    stopped = True
                else:
                    yield Chunk()
        except anthropic.AnthropicError as error:
            raise self._error(error, streaming=True) from None
        except httpx2.TransportError:
            message = "the upstream connection dropped mid-reply"
            raise BackendError("upstream_disconnected", message, retryable=True) from None
        except (ValueError, TypeError, AttributeError) as error:
            raise _bad_response(error) from None
        if not stopped:
            raise _incomplete(events)
        yield Chunk(usage=report.usage(), finish_reason=_finish_reason(stop_reason))

    def _error(self, error: anthropic.AnthropicError, *, streaming: bool) -> BackendError:
        secrets = (self._client.api_key,)
        if isinstance(error, anthropic.APIStatusError):
            message = redact(_upstream_message(error), secrets)
            if error.status_code < 400:  # an `error` event inside a 200 stream
                return _stream_error(error.type, message)
            headers = error.response.headers
            return status_error(
                error.status_code,
                message,
                retry_after=parse_retry_after(headers),
                should_retry=headers.get("x-should-retry"),
            )
        if isinstance(error, anthropic.APITimeoutError):
            return BackendError("upstream_timeout", "the upstream timed out", retryable=True)
        if isinstance(error, anthropic.APIConnectionError):
            if streaming:
                message = "the upstream connection dropped mid-reply"
                return BackendError("upstream_disconnected", message, retryable=True)
            message = f"could not reach the upstream: {redact(_cause(error), secrets)}"
            return BackendError("upstream_connect_error", message, retryable=True)
        return BackendError("upstream_error", redact(str(error), secrets))


def _params(request: ModelRequest) -> AnthropicParams:
    try:
        return AnthropicParams.parse(request.model.params)
    except (msgspec.ValidationError, ValueError) as error:
        raise BackendError("invalid_model_params", f"model params: {error}") from None


def _finish_reason(stop_reason: str | None) -> str:
    if stop_reason is None:
        return "stop"
    return _FINISH_REASONS.get(stop_reason, stop_reason)


def _incomplete(events: int) -> BackendError:
    if events == 0:
        return BackendError("upstream_bad_response", "the upstream sent no stream events")
    message = "the upstream stream ended before the reply was complete"
    return BackendError("upstream_disconnected", message, retryable=True)


def _upstream_message(error: anthropic.APIStatusError) -> str:
    if error.api_message:
        return error.api_message
    body = error.body
    if isinstance(body, str) and body:
        return body
    return error.message


def _stream_error(kind: str | None, message: str) -> BackendError:
    code, retryable = _STREAM_ERROR_CODES.get(kind or "", ("upstream_error", False))
    return BackendError(
        code, f"upstream error ({kind or 'unknown'}): {message}", retryable=retryable
    )


def _cause(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return str(cause) if cause is not None and str(cause) else str(error)


def _bad_response(error: Exception) -> BackendError:
    detail = (
        f"{type(error).__name__}: {error}"
        if isinstance(error, ValueError)
        else type(error).__name__
    )
    return BackendError(
        "upstream_bad_response", f"the upstream sent malformed stream data ({detail})"
    )
