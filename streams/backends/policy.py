"""Timeouts, retries and error shaping shared by the real upstream backends.

The SDKs' own retries are off, so the policy here is the only one: it retries a failed
attempt only while no reply text has been handed on, because text already streamed to a
client cannot be taken back.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import aclosing

import msgspec

from streams.backends.base import BackendError, Chunk

_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_MAX_MESSAGE_CHARS = 1_000
REDACTED = "[redacted]"


class UpstreamPolicy(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """How long to wait for an upstream and how often to try again. Times are in seconds."""

    connect_timeout: float = 10.0
    first_token_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_retries: int = 2
    max_retry_wait: float = 30.0
    retry_backoff: float = 0.5

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "first_token_timeout", "idle_timeout"):
            if not 0 < getattr(self, name) <= 3_600:
                raise ValueError(f"{name} must be in (0, 3600] seconds")
        if not 0 <= self.max_retries <= 10:
            raise ValueError("max_retries must be in [0, 10]")
        if not 0 <= self.max_retry_wait <= 600:
            raise ValueError("max_retry_wait must be in [0, 600] seconds")
        if not 0 <= self.retry_backoff <= 60:
            raise ValueError("retry_backoff must be in [0, 60] seconds")

    def retry_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before trying again, or None when the upstream asks for too long.

        ``attempt`` counts the failed attempts so far, from 0. The upstream's ``Retry-After``
        wins over our own exponential backoff (with jitter) when it gives one.
        """
        if retry_after is not None:
            return max(retry_after, 0.0) if retry_after <= self.max_retry_wait else None
        backoff = self.retry_backoff * 2.0**attempt * random.uniform(0.75, 1.0)
        return min(backoff, self.max_retry_wait)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Read ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date) into seconds."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Cut ``text`` to a readable length with every secret replaced, before a user sees it."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "…"
    return text


def status_error(
    status: int,
    upstream_message: str,
    *,
    retry_after: float | None = None,
    should_retry: str | None = None,
) -> BackendError:
    """The error for an HTTP error status, keeping the upstream's own words."""
    if status == 429:
        code = "upstream_rate_limited"
    elif status >= 500:
        code = "upstream_server_error"
    elif status == 408:
        code = "upstream_timeout"
    else:
        code = "upstream_error"
    retryable = status >= 500 or status in _RETRYABLE_STATUSES
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    message = f"upstream answered HTTP {status}: {upstream_message or 'no error message'}"
    return BackendError(code, message, retryable=retryable, retry_after=retry_after)


async def with_retries(
    attempt: Callable[[], AsyncGenerator[Chunk, None]], policy: UpstreamPolicy
) -> AsyncGenerator[Chunk, None]:
    """Run ``attempt`` under the policy's deadlines, starting it again on a retryable failure.

    An attempt may yield empty chunks as a sign of life (an upstream event without text or
    usage); they restart the idle timer and are not passed on.
    """
    failures = 0
    while True:
        sent_text = False
        try:
            async with aclosing(_within_deadlines(attempt(), policy)) as chunks:
                async for chunk in chunks:
                    sent_text = sent_text or bool(chunk.text)
                    yield chunk
            return
        except BackendError as error:
            delay = _delay_before_retry(error, policy, failures, sent_text)
            if delay is None:
                raise
        failures += 1
        await asyncio.sleep(delay)


def _delay_before_retry(
    error: BackendError, policy: UpstreamPolicy, failures: int, sent_text: bool
) -> float | None:
    if sent_text or not error.retryable or failures >= policy.max_retries:
        return None
    return policy.retry_delay(failures, error.retry_after)


async def _within_deadlines(
    chunks: AsyncGenerator[Chunk, None], policy: UpstreamPolicy
) -> AsyncGenerator[Chunk, None]:
    """Enforce the first-token deadline, then the idle timeout between upstream events."""
    loop = asyncio.get_running_loop()
    first_token_due = loop.time() + policy.first_token_timeout
    got_text = False
    async with aclosing(chunks):
        while True:
            due = loop.time() + policy.idle_timeout if got_text else first_token_due
            try:
                async with asyncio.timeout_at(due) as deadline:
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise _timeout_error(policy, got_text) from None
            got_text = got_text or bool(chunk.text)
            if chunk.text or chunk.usage is not None or chunk.finish_reason is not None:
                yield chunk


def _timeout_error(policy: UpstreamPolicy, got_text: bool) -> BackendError:
    if got_text:
        message = f"the upstream sent nothing for {policy.idle_timeout:g} s mid-reply"
        return BackendError("upstream_timeout", message, retryable=False)
    message = f"the upstream sent no reply text within {policy.first_token_timeout:g} s"
    return BackendError("upstream_timeout", message, retryable=True)
