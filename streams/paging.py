"""Opaque keyset cursors over sorted-set indexes.

A cursor names the last item returned (score and member), so sessions created or removed
while a client pages never make it skip or repeat one.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from streams.errors import InvalidInput
from streams.types import Page

T = TypeVar("T")


class KeysetCursor(msgspec.Struct, array_like=True):
    sort: str
    order: str
    score: int
    member: str


class OffsetCursor(msgspec.Struct, array_like=True):
    kind: str
    offset: int


def encode_cursor(cursor: KeysetCursor | OffsetCursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def _decode(raw: str, kind: type[T]) -> T:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        return msgspec.json.decode(base64.urlsafe_b64decode(padded), type=kind)
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidInput("is not valid", field="cursor") from exc


def decode_keyset(raw: str, sort: str, order: str) -> KeysetCursor:
    cursor = _decode(raw, KeysetCursor)
    if (cursor.sort, cursor.order) != (sort, order):
        raise InvalidInput("was issued for a different sort or order", field="cursor")
    return cursor


def decode_offset(raw: str, kind: str) -> int:
    cursor = _decode(raw, OffsetCursor)
    if cursor.kind != kind or cursor.offset < 0:
        raise InvalidInput("is not valid", field="cursor")
    return cursor.offset


def after_cursor(score: int, member: str, cursor: KeysetCursor | None, descending: bool) -> bool:
    """Whether an index entry comes strictly after ``cursor`` in the page order."""
    if cursor is None:
        return True
    if descending:
        return (score, member) < (cursor.score, cursor.member)
    return (score, member) > (cursor.score, cursor.member)


async def every_item(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    """All pages of a listing, for APIs that answer with everything: ``fetch(cursor)``."""
    found: list[T] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
