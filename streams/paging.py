"""Opaque keyset cursors over sorted-set indexes.

A cursor names the last item returned (score and member), so sessions created or removed
while a client pages never make it skip or repeat one.
"""

from __future__ import annotations

import base64
from typing import Generic, Literal, TypeVar

import msgspec

from streams.errors import InvalidInput

T = TypeVar("T")
SortField = Literal["createdAt", "updatedAt"]
Order = Literal["asc", "desc"]


class Page(msgspec.Struct, Generic[T], rename="camel"):
    data: list[T]
    next_cursor: str | None


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
        raise InvalidInput("cursor is not valid", details={"field": "cursor"}) from exc


def decode_keyset(raw: str, sort: str, order: str) -> KeysetCursor:
    cursor = _decode(raw, KeysetCursor)
    if (cursor.sort, cursor.order) != (sort, order):
        raise InvalidInput(
            "cursor was issued for a different sort or order", details={"field": "cursor"}
        )
    return cursor


def decode_offset(raw: str, kind: str) -> int:
    cursor = _decode(raw, OffsetCursor)
    if cursor.kind != kind or cursor.offset < 0:
        raise InvalidInput("cursor is not valid", details={"field": "cursor"})
    return cursor.offset


def after_cursor(score: int, member: str, cursor: KeysetCursor | None, descending: bool) -> bool:
    """Whether an index entry comes strictly after ``cursor`` in the page order."""
    if cursor is None:
        return True
    if descending:
        return (score, member) < (cursor.score, cursor.member)
    return (score, member) > (cursor.score, cursor.member)
