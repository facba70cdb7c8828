"""The Anthropic backend, driven through the official SDK against a real local server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from types import SimpleNamespace

import pytest

from streams.backends.anthropic_messages import AnthropicMessagesBackend, UsageReport
from streams.backends.base import Message, ModelRequest, ModelSpec
from streams.backends.policy import UpstreamPolicy
from streams.types import Usage
from tests.support.ports import free_port
from tests.support.upstream import Reply, UpstreamServer, drain, model_request

API_KEY = "sk-ant-parley-test-SECRET-77d1e0"
FAST = UpstreamPolicy(
    connect_timeout=2, first_token_timeout=1.0, idle_timeout=0.5, max_retries=2, retry_backoff=0.01
)


@pytest.fixture
def upstream(upstream: UpstreamServer) -> UpstreamServer:
    """The module's fake upstream (tests/conftest.py), reset for each test."""
    upstream.reset()
    return upstream


@pytest.fixture
async def backend(upstream: UpstreamServer) -> AsyncIterator[AnthropicMessagesBackend]:
    backend = AnthropicMessagesBackend(
        base_url=upstream.anthropic_base_url, api_key=API_KEY, policy=FAST
    )
    yield backend
    await backend.aclose()


async def test_reply_text_is_reassembled_across_pings_and_block_events(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(pieces=("Grüß", " dich", " 👋", ", friend", ".")))

    outcome = await drain(backend.stream(model_request("anthropic", "hello")))

    assert outcome.error is None
    assert outcome.text == "Grüß dich 👋, friend."
    assert outcome.final.finish_reason == "stop"


async def test_request_sends_instructions_as_system_then_history_in_order(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    request = model_request("anthropic", "one", "two", "three", instructions="Be kind.", name="c-x")

    await drain(backend.stream(request))

    body = upstream.requests[0].body
    assert upstream.requests[0].path == "/v1/messages"
    assert body["model"] == "c-x"
    assert body["system"] == "Be kind."
    assert body["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    assert body["stream"] is True
    assert body["max_tokens"] == 4096


async def test_no_system_field_without_instructions(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    await drain(backend.stream(model_request("anthropic", "hi", instructions="")))

    assert "system" not in upstream.requests[0].body


async def test_empty_turns_are_left_out_and_neighbours_of_one_role_joined(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    turns = [
        Message(role="user", text="first"),
        Message(role="assistant", text=""),
        Message(role="user", text="second"),
    ]
    request = ModelRequest(instructions="", messages=turns, model=ModelSpec(provider="anthropic"))

    await drain(backend.stream(request))

    assert upstream.requests[0].body["messages"] == [{"role": "user", "content": "first\n\nsecond"}]


async def test_params_map_onto_the_request(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    params = {
        "maxOutputTokens": 300,
        "temperature": 0.2,
        "topK": 5,
        "stopSequences": ["\n\nHuman:"],
        "promptCache": "1h",
        "extraBody": {"metadata": {"user_id": "u-1"}},
    }

    await drain(backend.stream(model_request("anthropic", "hi", params=params)))

    body = upstream.requests[0].body
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0.2
    assert body["top_k"] == 5
    assert "top_p" not in body
    assert body["stop_sequences"] == ["\n\nHuman:"]
    assert body["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["metadata"] == {"user_id": "u-1"}


async def test_extra_body_cannot_replace_the_conversation(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    params = {"extraBody": {"messages": []}}

    outcome = await drain(backend.stream(model_request("anthropic", "hi", params=params)))

    assert outcome.error is not None
    assert outcome.error.code == "invalid_model_params"
    assert upstream.requests == []


async def test_api_key_is_sent_to_the_upstream(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    await drain(backend.stream(model_request("anthropic", "hi")))

    headers = upstream.requests[0].headers
    assert API_KEY in (
        headers.get("x-api-key"),
        headers.get("authorization", "").removeprefix("Bearer "),
    )
    assert "anthropic-version" in headers


async def test_input_usage_is_reported_before_the_first_text(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(input_tokens=40, cached_tokens=8))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    first = outcome.chunks[0]
    assert first.text == ""
    assert first.usage == Usage(
        input_tokens=40, output_tokens=1, cache_read_input_tokens=8, total_tokens=49
    )


async def test_final_usage_is_exactly_the_upstream_report_with_cache_reads_and_writes(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(
        Reply(input_tokens=20, cached_tokens=100, cache_creation_5m=30, cache_creation_1h=40)
    )

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.final.usage == Usage(
        input_tokens=20,
        output_tokens=4,
        cache_read_input_tokens=100,
        cache_creation_input_tokens=70,
        cache_creation_5m_input_tokens=30,
        cache_creation_1h_input_tokens=40,
        total_tokens=194,
    )


async def test_cache_writes_reported_without_a_ttl_breakdown_count_as_5_minute_writes(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(cache_creation_5m=25, cache_breakdown=False))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    usage = outcome.final.usage
    assert usage is not None
    assert (
        usage.cache_creation_input_tokens,
        usage.cache_creation_5m_input_tokens,
        usage.cache_creation_1h_input_tokens,
    ) == (25, 25, 0)


async def test_message_delta_usage_overwrites_rather_than_adds(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    # message_start reports output_tokens=1 and the input; message_delta repeats them all.
    upstream.queue(Reply(pieces=("a", "b"), input_tokens=11, output_tokens=9))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    reports = [chunk.usage for chunk in outcome.chunks if chunk.usage is not None]
    assert [(u.input_tokens, u.output_tokens) for u in reports] == [(11, 1), (11, 9), (11, 9)]


def test_cache_writes_come_from_the_ttl_breakdown_when_only_it_is_reported() -> None:
    report = UsageReport()
    breakdown = SimpleNamespace(ephemeral_5m_input_tokens=6, ephemeral_1h_input_tokens=4)

    usage = report.update(
        SimpleNamespace(input_tokens=3, output_tokens=1, cache_creation=breakdown)
    )

    assert usage.cache_creation_input_tokens == 10
    assert (usage.cache_creation_5m_input_tokens, usage.cache_creation_1h_input_tokens) == (6, 4)
    assert usage.total_tokens == 14


async def test_stop_reason_max_tokens_becomes_length(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(finish_reason="max_tokens"))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.final.finish_reason == "length"


async def test_error_event_mid_reply_keeps_the_partial_text_and_the_upstream_message(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(
        Reply(pieces=("Par", "tial", " reply"), error_after=2, error_message="Overloaded")
    )

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.text == "Partial"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_server_error"
    assert "overloaded_error" in outcome.error.message
    assert "Overloaded" in outcome.error.message
    assert len(upstream.requests) == 1


async def test_error_event_before_the_first_text_is_retried(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(error_after=0), Reply(pieces=("fine",)))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is None
    assert outcome.text == "fine"
    assert len(upstream.requests) == 2


async def test_invalid_request_error_event_is_not_retried(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(
        Reply(error_after=0, error_type="invalid_request_error", error_message="bad prompt")
    )

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_error"
    assert "bad prompt" in outcome.error.message
    assert len(upstream.requests) == 1


async def test_connect_error_to_a_closed_port() -> None:
    policy = UpstreamPolicy(max_retries=1, retry_backoff=0.01)
    backend = AnthropicMessagesBackend(
        base_url=f"http://127.0.0.1:{free_port()}", api_key=API_KEY, policy=policy
    )
    try:
        outcome = await drain(backend.stream(model_request("anthropic", "hi")))
    finally:
        await backend.aclose()

    assert outcome.chunks == []
    assert outcome.error is not None
    assert outcome.error.code == "upstream_connect_error"
    assert API_KEY not in outcome.error.message


async def test_first_token_timeout_is_not_reset_by_message_start_or_ping(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.default = Reply(hang_after=0)
    started = time.monotonic()

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_timeout"
    assert outcome.text == ""
    assert len(upstream.requests) == 3
    elapsed = time.monotonic() - started
    assert 3 * FAST.first_token_timeout <= elapsed < 3 * FAST.first_token_timeout + 1.5


async def test_idle_timeout_mid_reply_keeps_the_partial_text_and_is_not_retried(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(pieces=("Hello", ",", " world"), hang_after=2))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.text == "Hello,"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_timeout"
    assert len(upstream.requests) == 1


async def test_overloaded_529_with_retry_after_is_honoured_then_retried(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(status=529, retry_after="0.3"), Reply(pieces=("ok",)))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is None
    assert outcome.text == "ok"
    first, second = upstream.requests
    assert second.received_at - first.received_at >= 0.3


async def test_rate_limit_asking_longer_than_max_retry_wait_fails_at_once(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    message = "This request would exceed the rate limit for your organization."
    upstream.queue(Reply(status=429, retry_after="90", error_message=message))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_rate_limited"
    assert outcome.error.retry_after == 90
    assert message in outcome.error.message
    assert len(upstream.requests) == 1


async def test_server_errors_are_retried_then_reported_with_the_upstream_text(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.default = Reply(status=500, error_message="Internal server error")

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_server_error"
    assert "HTTP 500: Internal server error" in outcome.error.message
    assert len(upstream.requests) == 3


async def test_client_errors_are_not_retried(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    message = "prompt is too long: 210000 tokens > 200000 maximum"
    upstream.queue(Reply(status=400, error_message=message))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is not None
    assert outcome.error.code == "upstream_error"
    assert message in outcome.error.message
    assert len(upstream.requests) == 1


async def test_connection_dropped_mid_reply_keeps_the_partial_text(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(pieces=("Hello", ",", " world"), drop_after=2))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.text == "Hello,"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_disconnected"
    assert len(upstream.requests) == 1


async def test_connection_dropped_before_the_first_text_is_retried(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(drop_after=0), Reply(pieces=("again",)))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is None
    assert outcome.text == "again"


async def test_stream_ending_without_message_stop_is_a_disconnect(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(pieces=("Hel", "lo"), end_after=1))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.text == "Hel"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_disconnected"


async def test_malformed_stream_is_a_bad_response(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(pieces=("Hello", " world"), malformed_after=1))

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.text == "Hello"
    assert outcome.error is not None
    assert outcome.error.code == "upstream_bad_response"


async def test_closing_the_stream_early_hangs_up_on_the_upstream(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend
) -> None:
    upstream.queue(Reply(pieces=tuple("abcdefghijklmnopqrstuvwxyz"), token_delay=0.05))

    async with aclosing(backend.stream(model_request("anthropic", "hi"))) as chunks:  # type: ignore[type-var]
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
        Reply(status=401, error_message=f"invalid x-api-key: {API_KEY}"),
        Reply(status=429, retry_after="600", error_message=f"key {API_KEY} is rate limited"),
        Reply(error_after=1, error_message=f"upstream failed for key {API_KEY}"),
    ],
    ids=["401", "429", "mid-stream"],
)
async def test_error_messages_never_contain_the_api_key(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend, reply: Reply
) -> None:
    upstream.queue(reply)

    outcome = await drain(backend.stream(model_request("anthropic", "hi")))

    assert outcome.error is not None
    assert API_KEY not in outcome.error.message
    assert "[redacted]" in outcome.error.message


async def test_the_api_key_never_reaches_a_log_line(
    upstream: UpstreamServer, backend: AnthropicMessagesBackend, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("anthropic", "httpx2", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    upstream.queue(Reply(status=401, error_message=f"bad key {API_KEY}"), Reply())

    await drain(backend.stream(model_request("anthropic", "hi")))
    await drain(backend.stream(model_request("anthropic", "hi")))

    assert caplog.records, "the SDK logged nothing at DEBUG: this test checks nothing"
    assert API_KEY not in caplog.text
