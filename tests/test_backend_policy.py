"""The upstream policy: Retry-After parsing, retry delays, error shaping and redaction."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from streams.backends.policy import (
    UpstreamPolicy,
    parse_retry_after,
    redact,
    status_error,
)


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7.0


def test_retry_after_ms_wins_over_seconds() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "7"}) == 0.25


def test_retry_after_as_an_http_date() -> None:
    header = formatdate(time.time() + 30, usegmt=True)

    delay = parse_retry_after({"retry-after": header})

    assert delay is not None
    assert 28 <= delay <= 30


def test_unreadable_or_missing_retry_after_is_none() -> None:
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_the_upstreams_retry_after_wins_over_backoff() -> None:
    assert UpstreamPolicy(max_retry_wait=10).retry_delay(0, 4.0) == 4.0


def test_a_retry_after_beyond_max_retry_wait_means_no_retry() -> None:
    assert UpstreamPolicy(max_retry_wait=10).retry_delay(0, 11.0) is None


def test_backoff_grows_and_stops_at_max_retry_wait() -> None:
    policy = UpstreamPolicy(retry_backoff=1.0, max_retry_wait=3.0)

    delays = [policy.retry_delay(attempt, None) for attempt in range(4)]

    assert 0.75 <= delays[0] <= 1.0  # type: ignore[operator]
    assert 1.5 <= delays[1] <= 2.0  # type: ignore[operator]
    assert delays[2] == delays[3] == 3.0


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "upstream_error", False),
        (401, "upstream_error", False),
        (408, "upstream_timeout", True),
        (429, "upstream_rate_limited", True),
        (500, "upstream_server_error", True),
        (529, "upstream_server_error", True),
    ],
)
def test_status_codes_map_to_error_codes(status: int, code: str, retryable: bool) -> None:
    error = status_error(status, "upstream words")

    assert (error.code, error.retryable) == (code, retryable)
    assert error.message == f"upstream answered HTTP {status}: upstream words"


def test_x_should_retry_overrides_the_status() -> None:
    assert not status_error(503, "down", should_retry="false").retryable
    assert status_error(400, "try again", should_retry="true").retryable


def test_redact_replaces_every_secret_and_cuts_long_text() -> None:
    text = redact("key sk-1 and sk-1 again " + "x" * 2_000, ["sk-1", None, ""])

    assert "sk-1" not in text
    assert text.count("[redacted]") == 2
    assert len(text) <= 1_001


@pytest.mark.parametrize(
    "fields",
    [{"first_token_timeout": 0}, {"idle_timeout": -1}, {"max_retries": 11}, {"max_retry_wait": -1}],
)
def test_policy_rejects_out_of_range_values(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        UpstreamPolicy(**fields)  # type: ignore[arg-type]
