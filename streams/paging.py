"""Cursors over sorted-set indexes and lists, in a form a schema can state exactly.

A keyset cursor names the last item returned, ``<score>.<member>``, so sessions created or
removed while a client pages never make it skip or repeat one; an offset cursor is a
position in a list. Any text that matches a cursor's pattern is a position: one that names
no item still pages from where it would be, as Stripe's ``starting_after`` does, so the
patterns in the OpenAPI document are the whole rule.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from streams.errors import InvalidInput
from streams.limits import ID
from streams.types import Page

T = TypeVar("T")

KEYSET = r"[0-9]{1,16}\." + ID  # <score>.<member>
OFFSET = r"[0-9]{1,9}"
KEYSET_PATTERN = f"^{KEYSET}$"
OFFSET_PATTERN = f"^{OFFSET}$"
_KEYSET = re.compile(KEYSET_PATTERN)
_OFFSET = re.compile(OFFSET_PATTERN)


class KeysetCursor(msgspec.Struct, frozen=True):
    score: int
    member: str


def encode_cursor(cursor: KeysetCursor | int) -> str:
    """A keyset position as ``<score>.<member>``; an offset as its number."""
    if isinstance(cursor, KeysetCursor):
        return f"{cursor.score}.{cursor.member}"
    return str(cursor)


def decode_keyset(raw: str) -> KeysetCursor:
    if not _KEYSET.fullmatch(raw):
        raise InvalidInput(
            f"must be a nextCursor this server gave (<number>.<id>), got {raw[:80]!r}",
            field="cursor",
        )
    score, member = raw.split(".", 1)
    return KeysetCursor(int(score), member)


def decode_offset(raw: str) -> int:
    if not _OFFSET.fullmatch(raw):
        raise InvalidInput(
            f"must be a nextCursor this server gave (a number), got {raw[:80]!r}", field="cursor"
        )
    return int(raw)


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
