"""Turning a lost Redis connection into the engine's :class:`Unavailable` error."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.errors import Unavailable

P = ParamSpec("P")
R = TypeVar("R")


def redis_guarded(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Surfaces answer :class:`Unavailable` (503 + Retry-After) instead of a traceback."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise Unavailable("Redis is unreachable; retry shortly") from exc

    return wrapper
