"""Per-principal limits, enforced in Redis so every worker enforces the same ones.

A request takes a token from its principal's bucket (RATE); an exchange takes a lease in its
principal's running set and counts against its quota (ADMIT), and gives the lease back with
its tokens when it ends (RELEASE). Each is one script call: one round trip, atomic.

A lease has a deadline that the process running the exchange keeps pushing back, so the
exchanges of a process that died stop counting once their leases run out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import msgspec

from streams.connect import RedisClient
from streams.errors import QuotaExceeded, RateLimited
from streams.guard import redis_guarded
from streams.keys import Keys
from streams.scripts import ADMIT, RATE, RELEASE, Script


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What one principal may do; 0 means no limit.

    ``quota_window_seconds``: quotas count over fixed windows of this length (0: for good).
    """

    requests_per_second: float = 0
    burst: int = 0
    max_concurrent_exchanges: int = 0
    token_quota: int = 0
    exchange_quota: int = 0
    quota_window_seconds: int = 0

    @property
    def rated(self) -> bool:
        return self.requests_per_second > 0

    @property
    def admitting(self) -> bool:
        """Whether exchanges need a lease: a cap or a quota applies."""
        return bool(self.max_concurrent_exchanges or self.token_quota or self.exchange_quota)

    def bucket_size(self) -> int:
        return self.burst or max(1, math.ceil(self.requests_per_second))


NO_LIMITS = Limits()
LimitsOf = Callable[[str], Limits]


class RateState(msgspec.Struct, frozen=True):
    """One request's place in its bucket, as the ``RateLimit-*`` headers report it."""

    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


class KeyUsage(msgspec.Struct, frozen=True, kw_only=True):
    """A principal's counted use in the current quota window."""

    principal: str
    running_exchanges: int
    exchanges: int
    tokens: int
    window_started_ms: int | None
    window_ends_ms: int | None
    limits: Limits


class Quotas:
    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        limits_of: LimitsOf,
        lease_ms: int,
        refused: Callable[[str], None] = lambda code: None,
    ) -> None:
        """``refused`` hears the code of every refusal, for metrics."""
        self._redis = redis
        self._refused = refused
        self._keys = keys
        self.limits_of = limits_of
        self._lease_ms = lease_ms
        self._rate = Script(RATE)
        self._admit = Script(ADMIT)
        self._release = Script(RELEASE)

    async def take_request(self, principal: str) -> RateState | None:
        """Take one request from the bucket; :class:`RateLimited` when it is empty.

        None when the principal has no rate limit: then Redis is not asked at all.
        """
        limits = self.limits_of(principal)
        if not limits.rated:
            return None
        size = limits.bucket_size()
        key = self._keys.limit(principal, "bucket")
        allowed, remaining, retry_ms, full_ms = await self._rate(
            self._redis, [key], [repr(limits.requests_per_second), size]
        )
        state = RateState(size, int(remaining), math.ceil(int(full_ms) / 1000))
        if not allowed:
            retry = max(1, math.ceil(int(retry_ms) / 1000))
            self._refused("rate_limited")
            raise RateLimited(
                f"more than {limits.requests_per_second:g} requests per second "
                f"(burst {size}); retry in {retry} s",
                code="rate_limited",
                retry_after=retry,
                limit_headers=state.headers(),
            )
        return state

    async def admit(self, principal: str, xid: str) -> bool:
        """Lease a place for exchange ``xid``; False when no cap or quota applies.

        :class:`RateLimited` at the concurrency cap, :class:`QuotaExceeded` with the quota
        spent; a refused exchange counts nothing.
        """
        limits = self.limits_of(principal)
        if not limits.admitting:
            return False
        window = _Window.now(limits.quota_window_seconds)
        verdict, _running, tokens, exchanges = await self._admit(
            self._redis,
            [self._keys.limit(principal, "running"), self._usage_key(principal, window)],
            [
                xid,
                limits.max_concurrent_exchanges,
                limits.token_quota,
                limits.exchange_quota,
                self._lease_ms,
                window.ttl_seconds,
            ],
        )
        if verdict != "ok":
            self._refused("concurrency_limited" if verdict == "busy" else "quota_exceeded")
        if verdict == "busy":
            cap = limits.max_concurrent_exchanges
            raise RateLimited(
                f"{cap} exchanges are already running for this key; retry when one ends",
                code="concurrency_limited",
                retry_after=1,
                limit_headers={},
            )
        if verdict == "quota":
            raise QuotaExceeded(
                _quota_message(limits, int(tokens), int(exchanges)),
                code="quota_exceeded",
                retry_after=window.seconds_left,
                limit_headers={},
            )
        return True

    async def release(self, principal: str, xid: str, tokens: int, *, began: bool = True) -> None:
        """Give back ``xid``'s lease and charge its tokens (once, however often called).

        ``began=False``: the exchange was refused after its lease (a busy session), so it
        is not counted at all.
        """
        window = _Window.now(self.limits_of(principal).quota_window_seconds)
        await self._release(
            self._redis,
            [self._keys.limit(principal, "running"), self._usage_key(principal, window)],
            [xid, tokens, window.ttl_seconds, 0 if began else 1],
        )

    async def renew(self, leases: list[tuple[str, str]]) -> None:
        """Push back the deadline of each ``(principal, xid)`` lease still held."""
        deadline = int(time.time() * 1000) + self._lease_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for principal, xid in leases:
                pipe.zadd(self._keys.limit(principal, "running"), {xid: deadline}, xx=True)
            await pipe.execute()

    @redis_guarded
    async def usage(self, principal: str) -> KeyUsage:
        limits = self.limits_of(principal)
        window = _Window.now(limits.quota_window_seconds)
        now_ms = int(time.time() * 1000)
        running_key = self._keys.limit(principal, "running")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(running_key, now_ms, "+inf")
            pipe.hmget(self._usage_key(principal, window), ["tokens", "exchanges"])
            running, (tokens, exchanges) = await pipe.execute()
        return KeyUsage(
            principal=principal,
            running_exchanges=int(running),
            exchanges=int(exchanges or 0),
            tokens=int(tokens or 0),
            window_started_ms=window.started_ms,
            window_ends_ms=window.ends_ms,
            limits=limits,
        )

    def _usage_key(self, principal: str, window: _Window) -> str:
        suffix = f"usage:{window.started_ms}" if window.started_ms is not None else "usage"
        return self._keys.limit(principal, suffix)


class _Window(msgspec.Struct, frozen=True):
    """The fixed quota window holding now; all None for a quota that never resets."""

    started_ms: int | None
    ends_ms: int | None

    @classmethod
    def now(cls, length_seconds: int) -> _Window:
        if not length_seconds:
            return cls(None, None)
        length_ms = length_seconds * 1000
        started = int(time.time() * 1000) // length_ms * length_ms
        return cls(started, started + length_ms)

    @property
    def seconds_left(self) -> int:
        if self.ends_ms is None:
            return 0
        return max(1, math.ceil((self.ends_ms - time.time() * 1000) / 1000))

    @property
    def ttl_seconds(self) -> int:
        """How long the window's counters are kept: past its end, for late releases."""
        return self.seconds_left + 3600 if self.ends_ms is not None else 0


def _quota_message(limits: Limits, tokens: int, exchanges: int) -> str:
    if limits.token_quota and tokens >= limits.token_quota:
        spent = f"the token quota of {limits.token_quota} is used up ({tokens} tokens)"
    else:
        spent = f"the quota of {limits.exchange_quota} exchanges is used up"
    if limits.quota_window_seconds:
        return f"{spent} for this {limits.quota_window_seconds} s window"
    return spent
