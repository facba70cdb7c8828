"""OpenAI-compatible Chat Completions streaming, through the official ``openai`` SDK.

Works with OpenAI and with the servers that copy its API (vLLM, Ollama, LM Studio, DeepSeek,
Qwen). The stream asks for ``include_usage`` so the upstream's own counts arrive in a final
chunk whose ``choices`` is empty; cached prompt tokens move from ``inputTokens`` to
``cacheReadInputTokens``, since Parley's ``inputTokens`` excludes cached input.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import msgspec
import openai
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from streams.backends.base import BackendError, Chunk, ModelRequest
from streams.backends.params import OpenAIChatParams
from streams.backends.policy import (
    UpstreamPolicy,
    parse_retry_after,
    redact,
    status_error,
    with_retries,
)
from streams.types import Usage

NO_KEY = "no-key"
_FINISH_REASONS = {"function_call": "tool_calls"}
_SERVER_ERROR_TYPES = frozenset({"server_error", "internal_error", "api_error"})


def map_usage(usage: CompletionUsage) -> Usage:
    """Parley usage from OpenAI's: cached prompt tokens are counted apart from input."""
    cached = 0
    details = usage.prompt_tokens_details
    if details is not None and details.cached_tokens:
        cached = details.cached_tokens
    elif usage.model_extra and isinstance(usage.model_extra.get("prompt_cache_hit_tokens"), int):
        cached = usage.model_extra["prompt_cache_hit_tokens"]  # DeepSeek's spelling
    return Usage(
        input_tokens=max((usage.prompt_tokens or 0) - cached, 0),
        output_tokens=usage.completion_tokens or 0,
        cache_read_input_tokens=cached,
    ).totalled()


def build_messages(request: ModelRequest) -> list[ChatCompletionMessageParam]:
    """The system message (the agent's instructions, when any), then the turns in order."""
    messages: list[ChatCompletionMessageParam] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for message in request.messages:
        if message.role == "user":
            messages.append({"role": "user", "content": message.text})
        else:
            messages.append({"role": "assistant", "content": message.text})
    return messages


class OpenAIChatBackend:
    """One upstream endpoint (base URL + key); serves every agent whose model lives there.

    The key is handed to the SDK client and nowhere else: it is not kept on this object,
    and error messages are scrubbed of it before they leave.
    """

    def __init__(
        self, *, base_url: str, api_key: str | None, policy: UpstreamPolicy | None = None
    ) -> None:
        self._policy = policy or UpstreamPolicy()
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or NO_KEY,
            max_retries=0,
            timeout=openai.Timeout(None, connect=self._policy.connect_timeout),
        )

    async def aclose(self) -> None:
        await self._client.close()

    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        return with_retries(lambda: self._attempt(request), self._policy)

    async def _attempt(self, request: ModelRequest) -> AsyncGenerator[Chunk, None]:
        fields = _params(request).request_fields()
        try:
            stream = await self._client.chat.completions.create(
                model=request.model.name,
                messages=build_messages(request),
                stream=True,
                stream_options={"include_usage": True},
                extra_body=fields or None,
            )
        except openai.OpenAIError as error:
            raise self._error(error, streaming=False) from None
        async with stream, aclosing(self._read(stream)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _read(
        self, stream: AsyncIterator[ChatCompletionChunk]
    ) -> AsyncGenerator[Chunk, None]:
        events = 0
        finish: str | None = None
        usage: Usage | None = None
        try:
            async for event in stream:
                events += 1
                text, reason, reported = _parse(event)
                finish = reason or finish
                usage = reported or usage
                yield Chunk(text=text, usage=reported)
        except openai.OpenAIError as error:
            raise self._error(error, streaming=True) from None
        except (ValueError, TypeError, AttributeError) as error:
            raise _bad_response(error) from None
        if events == 0:
            raise BackendError("upstream_bad_response", "the upstream sent no stream events")
        if finish is None:
            message = "the upstream stream ended before the reply was complete"
            raise BackendError("upstream_disconnected", message, retryable=True)
        yield Chunk(usage=usage, finish_reason=_FINISH_REASONS.get(finish, finish))

    def _error(self, error: openai.OpenAIError, *, streaming: bool) -> BackendError:
        secrets = (self._client.api_key,)
        if isinstance(error, openai.APIStatusError):
            headers = error.response.headers
            return status_error(
                error.status_code,
                redact(_upstream_message(error), secrets),
                retry_after=parse_retry_after(headers),
                should_retry=headers.get("x-should-retry"),
            )
        if isinstance(error, openai.APITimeoutError):
            return BackendError("upstream_timeout", "the upstream timed out", retryable=True)
        if isinstance(error, openai.APIConnectionError):
            if streaming:
                message = "the upstream connection dropped mid-reply"
                return BackendError("upstream_disconnected", message, retryable=True)
            message = f"could not reach the upstream: {redact(_cause(error), secrets)}"
            return BackendError("upstream_connect_error", message, retryable=True)
        if isinstance(error, openai.APIError):
            return _stream_error(error, redact(_upstream_message(error), secrets))
        return BackendError("upstream_error", redact(str(error), secrets))


def _params(request: ModelRequest) -> OpenAIChatParams:
    try:
        return OpenAIChatParams.parse(request.model.params)
    except (msgspec.ValidationError, ValueError) as error:
        raise BackendError("invalid_model_params", f"model params: {error}") from None


def _parse(event: ChatCompletionChunk) -> tuple[str, str | None, Usage | None]:
    """The reply text, finish reason and usage one stream chunk carries (first choice only)."""
    text: list[str] = []
    finish: str | None = None
    for choice in event.choices or ():
        if choice.index != 0:
            continue
        delta = choice.delta
        if delta is not None:
            text.extend(piece for piece in (delta.content, delta.refusal) if piece)
        finish = choice.finish_reason or finish
    usage = map_usage(event.usage) if event.usage is not None else None
    return "".join(text), finish, usage


def _upstream_message(error: openai.APIError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    if isinstance(body, str) and body:
        return body
    return error.message


def _stream_error(error: openai.APIError, message: str) -> BackendError:
    """An error object the upstream sent inside the stream instead of a chunk."""
    kind = error.type or ""
    if kind in _SERVER_ERROR_TYPES:
        return BackendError("upstream_server_error", message, retryable=True)
    if "rate_limit" in kind or (error.code or "").startswith("rate_limit"):
        return BackendError("upstream_rate_limited", message, retryable=True)
    return BackendError("upstream_error", message)


def _cause(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return str(cause) if cause is not None and str(cause) else str(error)


def _bad_response(error: Exception) -> BackendError:
    if isinstance(error, json.JSONDecodeError):
        detail = f"invalid JSON in the stream ({error.msg}, char {error.pos})"
    else:
        detail = f"unexpected stream data ({type(error).__name__})"
    return BackendError("upstream_bad_response", f"the upstream sent {detail}")
