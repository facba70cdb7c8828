"""Registry ids that sort in creation order, and pages over a sorted set of ids.

A registry keeps its ids in one sorted set, every score 0, so Redis orders them by id
(ZRANGEBYLEX). Ids minted by :func:`ordered_id` start with their creation time in hex, so
among them id order is creation order. A page starts after (or ends before) an id, never at
an offset, so entries added or removed meanwhile never make a reader skip or repeat one.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from streams.clock import now_ms
from streams.connect import RedisClient

T = TypeVar("T")

# Reads the entries of some ids, in order: None for an id gone or filtered out.
Load = Callable[[list[str]], Awaitable[list[T | None]]]


def ordered_id(prefix: str) -> str:
    """``prefix`` + 12 hex digits of epoch ms + 12 random ones: 24 hex, creation-ordered."""
    return f"{prefix}{now_ms():012x}{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Position:
    """Where a page is: right after ``after``, or right before ``before``; else the start."""

    after: str | None = None
    before: str | None = None

    @property
    def forward(self) -> bool:
        return self.before is None


@dataclass(frozen=True)
class IdPage(Generic[T]):
    """Entries in id order; ``more``: whether others lie beyond, in the direction asked."""

    items: list[T]
    more: bool


async def page_of_ids(
    redis: RedisClient, index: str, limit: int, position: Position, load: Load[T]
) -> IdPage[T]:
    """Up to ``limit`` entries from ``position``, skipping those ``load`` answers None for."""
    bound = position.after if position.forward else position.before
    found: list[T] = []
    while len(found) <= limit:
        wanted = limit + 1 - len(found)
        ids = await _ids(redis, index, bound, position.forward, wanted)
        found += [entry for entry in await load(ids) if entry is not None]
        if len(ids) < wanted:
            break
        bound = ids[-1]
    items = found[:limit]
    return IdPage(items if position.forward else items[::-1], more=len(found) > limit)


async def _ids(
    redis: RedisClient, index: str, bound: str | None, forward: bool, count: int
) -> list[str]:
    if forward:
        start = f"({bound}" if bound else "-"
        return cast(list[str], await redis.zrangebylex(index, start, "+", 0, count))
    end = f"({bound}" if bound else "+"
    return cast(list[str], await redis.zrevrangebylex(index, end, "-", 0, count))
