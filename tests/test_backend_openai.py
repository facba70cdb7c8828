"""The OpenAI-compatible backend, driven through the official SDK against a real local server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from streams.backends.openai_chat import OpenAIChatBackend
from streams.backends.policy import UpstreamPolicy
from streams.types import Usage
from tests.support.ports import free_port
from tests.support.upstream import Reply, UpstreamServer, drain, model_request

API_KEY = "sk-parley-test-SECRET-4f9c2a"
FAST = UpstreamPolicy(
    connect_timeout=2, first_token_timeout=1.0, idle_timeout=0.5, max_retries=2, retry_backoff=0.01
)


@pytest.fixture
def upstream(upstream: UpstreamServer) -> UpstreamServer:
    """The module's fake upstream (tests/conftest.py), reset for each test."""
    upstream.reset()
    return upstream


@pytest.fixture
async def backend(upstream: UpstreamServer) -> AsyncIterator[OpenAIChatBackend]:
    backend = OpenAIChatBackend(base_url=upstream.openai_base_url, api_key=API_KEY, policy=FAST)
    yield backend
    await backend.aclose()


async def test_reply_text_is_reassembled_from_the_stream(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("Grüß", " dich", " 👋", ", friend", ".")))

    outcome = await drain(backend.stream(model_request("openai", "hello")))

    assert outcome.error is None
    assert outcome.text == "Grüß dich 👋, friend."
    assert outcome.final.finish_reason == "stop"
    assert [c.finish_reason for c in outcome.chunks[:-1]] == [None] * (len(outcome.chunks) - 1)


async def test_request_sends_instructions_then_history_in_order(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    request = model_request("openai", "one", "two", "three", instructions="Be kind.", name="gpt-x")

    await drain(backend.stream(request))

    body = upstream.requests[0].body
    assert body["model"] == "gpt-x"
    assert body["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_no_system_message_without_instructions(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    await drain(backend.stream(model_request("openai", "hi", instructions="")))

    assert upstream.requests[0].body["messages"] == [{"role": "user", "content": "hi"}]


async def test_params_map_onto_the_request(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    params = {
        "temperature": 0.3,
        "topP": 0.9,
        "maxOutputTokens": 256,
        "presencePenalty": 0.1,
        "stop": ["END"],
        "seed": 7,
        "extraBody": {"top_k": 40},
    }

    await drain(backend.stream(model_request("openai", "hi", params=params)))

    body = upstream.requests[0].body
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body
    assert body["presence_penalty"] == 0.1
    assert body["stop"] == ["END"]
    assert body["seed"] == 7
    assert body["top_k"] == 40


async def test_max_tokens_field_can_be_the_legacy_one(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    params = {"maxOutputTokens": 64, "maxTokensField": "max_tokens"}

    await drain(backend.stream(model_request("openai", "hi", params=params)))

    body = upstream.requests[0].body
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body


async def test_unknown_params_are_refused_before_calling_the_upstream(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    request = model_request("openai", "hi", params={"temprature": 0.3})

    outcome = await drain(backend.stream(request))

    assert outcome.error is not None
    assert outcome.error.code == "invalid_model_params"
    assert "temprature" in outcome.error.message
    assert upstream.requests == []


async def test_api_key_is_sent_as_a_bearer_token(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    await drain(backend.stream(model_request("openai", "hi")))

    assert upstream.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_usage_maps_cached_prompt_tokens_apart_from_input(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(input_tokens=30, cached_tokens=1_024, output_tokens=17))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.final.usage == Usage(
        input_tokens=30, output_tokens=17, cache_read_input_tokens=1_024, total_tokens=1_071
    )


async def test_usage_arrives_only_with_the_usage_only_final_chunk(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("a", "b", "c"), input_tokens=5))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    text_chunks = [c for c in outcome.chunks if c.text]
    assert [c.usage for c in text_chunks] == [None, None, None]
    assert outcome.chunks[-2].usage == Usage(input_tokens=5, output_tokens=3, total_tokens=8)
    assert outcome.final.usage == outcome.chunks[-2].usage


async def test_a_stream_without_usage_ends_without_a_report(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(include_usage=False))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is None
    assert all(chunk.usage is None for chunk in outcome.chunks)
    assert outcome.final.finish_reason == "stop"


async def test_finish_reason_length_is_passed_on(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(finish_reason="length"))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.final.finish_reason == "length"


async def test_connect_error_to_a_closed_port() -> None:
    policy = UpstreamPolicy(max_retries=1, retry_backoff=0.01)
    backend = OpenAIChatBackend(
        base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=API_KEY, policy=policy
    )
    try:
        outcome = await drain(backend.stream(model_request("openai", "hi")))
    finally:
        await backend.aclose()

    assert outcome.chunks == []
    assert outcome.error is not None
    assert outcome.error.code == "upstream_connect_error"
    assert outcome.error.retryable
    assert API_KEY not in outcome.error.message


async def test_first_token_timeout(upstream: UpstreamServer, backend: OpenAIChatBackend) -> None:
    upstream.default = Reply(hang_after=0)
    started = time.monotonic()

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_timeout"
    assert len(upstream.requests) == 3  # one try and two retries, each given the full deadline
    assert (
        3 * FAST.first_token_timeout
        <= time.monotonic() - started
        < 3 * FAST.first_token_timeout + 1.5
    )


async def test_first_token_timeout_covers_a_stall_before_the_headers(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(headers_delay=5), Reply(pieces=("late", " but", " fine")))
    started = time.monotonic()

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is None
    assert outcome.text == "late but fine"
    assert time.monotonic() - started < FAST.first_token_timeout + 1


async def test_idle_timeout_mid_reply_keeps_the_partial_text_and_is_not_retried(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("Hello", ",", " world"), hang_after=2))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.text == "Hello,"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_timeout"
    assert not outcome.error.retryable
    assert len(upstream.requests) == 1


async def test_slow_tokens_within_the_deadlines_stream_normally(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("s", "l", "o", "w"), first_token_delay=0.7, token_delay=0.3))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is None
    assert outcome.text == "slow"
    assert len(upstream.requests) == 1


async def test_rate_limit_with_retry_after_is_honoured_then_retried(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(status=429, retry_after="0.4"), Reply(pieces=("ok",)))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is None
    assert outcome.text == "ok"
    first, second = upstream.requests
    assert second.received_at - first.received_at >= 0.4


async def test_rate_limit_asking_longer_than_max_retry_wait_fails_at_once(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    message = "Rate limit reached for gpt-x in organization org-1 on requests per min."
    upstream.queue(Reply(status=429, retry_after="120", error_message=message))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_rate_limited"
    assert outcome.error.retryable
    assert outcome.error.retry_after == 120
    assert message in outcome.error.message
    assert len(upstream.requests) == 1


async def test_server_errors_are_retried_then_reported_with_the_upstream_text(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.default = Reply(status=500, error_message="The engine is currently overloaded.")

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_server_error"
    assert "HTTP 500" in outcome.error.message
    assert "The engine is currently overloaded." in outcome.error.message
    assert len(upstream.requests) == 3


async def test_a_server_error_then_success_streams_the_reply(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(status=503), Reply(pieces=("back",)))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is None
    assert outcome.text == "back"


async def test_client_errors_are_not_retried(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    message = "This model's maximum context length is 8192 tokens."
    upstream.queue(Reply(status=400, error_message=message))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_error"
    assert not outcome.error.retryable
    assert message in outcome.error.message
    assert len(upstream.requests) == 1


async def test_connection_dropped_mid_reply_keeps_the_partial_text(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("Hello", ",", " world"), drop_after=2))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.text == "Hello,"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_disconnected"
    assert len(upstream.requests) == 1


async def test_connection_dropped_before_the_first_token_is_retried(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(drop_after=0), Reply(pieces=("again",)))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is None
    assert outcome.text == "again"
    assert len(upstream.requests) == 2


async def test_stream_ending_before_the_finish_is_a_disconnect(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("Hel", "lo"), end_after=1))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.text == "Hel"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_disconnected"


async def test_malformed_stream_is_a_bad_response(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("Hello", " world"), malformed_after=1))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.text == "Hello"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_bad_response"
    assert not outcome.error.retryable


async def test_error_object_mid_stream_carries_the_upstream_message(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=("Hi", " there"), error_after=1, error_message="Model crashed."))

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.text == "Hi"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_server_error"
    assert "Model crashed." in outcome.error.message
    assert len(upstream.requests) == 1


async def test_closing_the_stream_early_hangs_up_on_the_upstream(
    upstream: UpstreamServer, backend: OpenAIChatBackend
) -> None:
    upstream.queue(Reply(pieces=tuple("abcdefghijklmnopqrstuvwxyz"), token_delay=0.05))

    async with aclosing(backend.stream(model_request("openai", "hi"))) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            if chunk.text:
                break

    for _ in range(40):
        if upstream.requests[0].client_closed_at is not None:
            break
        await asyncio.sleep(0.05)
    assert upstream.requests[0].client_closed_at is not None


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=401, error_message=f"Incorrect API key provided: {API_KEY}."),
        Reply(status=429, retry_after="600", error_message=f"key {API_KEY} is rate limited"),
        Reply(error_after=1, error_message=f"upstream failed for key {API_KEY}"),
    ],
    ids=["401", "429", "mid-stream"],
)
async def test_error_messages_never_contain_the_api_key(
    upstream: UpstreamServer, backend: OpenAIChatBackend, reply: Reply
) -> None:
    upstream.queue(reply)

    outcome = await drain(backend.stream(model_request("openai", "hi")))

    assert outcome.error is not None
    assert API_KEY not in outcome.error.message
    assert API_KEY not in str(outcome.error)
    assert "[redacted]" in outcome.error.message


async def test_the_api_key_never_reaches_a_log_line(
    upstream: UpstreamServer, backend: OpenAIChatBackend, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("openai", "httpx2", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    upstream.queue(Reply(status=401, error_message=f"bad key {API_KEY}"), Reply())

    await drain(backend.stream(model_request("openai", "hi")))
    await drain(backend.stream(model_request("openai", "hi")))

    assert caplog.records, "the SDK logged nothing at DEBUG: this test checks nothing"
    assert API_KEY not in caplog.text
