"""List answers and their cursors, as both clients of this API read them.

Qoder pages with ``after_id`` / ``before_id`` and reads ``{data, first_id, last_id,
has_more}``; the anthropic SDK follows only ``next_page``, which it sends back as ``page``.
So every list answers all five fields and takes any one of the three: ``page`` goes on in
the direction the listing went (after the last item, or before the first).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Generic, Protocol, TypeVar

import msgspec
from litestar.params import Parameter

from server.surfaces.qoder.errors import api_error
from streams.id_index import IdPage, Position

Limit = Annotated[int, Parameter(ge=1, le=100, description="Items per page, 1-100.")]
Page = Annotated[str | None, Parameter(description="The next_page of the previous answer.")]
AfterId = Annotated[str | None, Parameter(description="Items right after this id.")]
BeforeId = Annotated[str | None, Parameter(description="Items right before this id.")]


class Identified(Protocol):
    @property
    def id(self) -> str: ...


E = TypeVar("E")
W = TypeVar("W", bound=Identified)


class ListBody(msgspec.Struct, Generic[W]):
    data: list[W]
    first_id: str | None
    last_id: str | None
    has_more: bool
    next_page: str | None


class _Cursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    forward: bool
    id: str


def position(page: str | None, after_id: str | None, before_id: str | None) -> Position:
    """Where the asked page starts; at most one of the three may be given."""
    given = [
        name
        for name, value in (("page", page), ("after_id", after_id), ("before_id", before_id))
        if value is not None
    ]
    if len(given) > 1:
        raise api_error(
            "invalid_request_error",
            f"give at most one of page, after_id and before_id, not {' and '.join(given)}",
            param=given[1],
        )
    if page is not None:
        cursor = _decode(page)
        return Position(after=cursor.id) if cursor.forward else Position(before=cursor.id)
    return Position(after=after_id, before=before_id)


def list_body(page: IdPage[E], where: Position, out: Callable[[E], W]) -> ListBody[W]:
    data = [out(item) for item in page.items]
    first_id = data[0].id if data else None
    last_id = data[-1].id if data else None
    next_page = None
    if page.more and first_id is not None and last_id is not None:
        next_page = _encode(_Cursor(True, last_id) if where.forward else _Cursor(False, first_id))
    return ListBody(data, first_id, last_id, page.more, next_page)


def _encode(cursor: _Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def _decode(raw: str) -> _Cursor:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        return msgspec.json.decode(base64.urlsafe_b64decode(padded), type=_Cursor)
    except (binascii.Error, ValueError, msgspec.ValidationError):
        raise api_error(
            "invalid_request_error", "page is not a next_page this API gave", param="page"
        ) from None
