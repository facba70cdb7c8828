"""Cursor query parameters whose schema states what the server mints (see streams.paging).

The pattern is documented, not enforced by Litestar, so a cursor that breaks it gets the
engine's message, which names the value.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

from streams.paging import KEYSET, OFFSET

_FROM = "The nextCursor of the previous page; empty or absent: the first page."

KeysetCursorQuery = Annotated[
    str | None, Parameter(description=_FROM, schema_extra={"pattern": f"^({KEYSET})?$"})
]
OffsetCursorQuery = Annotated[
    str | None, Parameter(description=_FROM, schema_extra={"pattern": f"^({OFFSET})?$"})
]
