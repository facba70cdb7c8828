"""List answers, their cursors and the query values lists take, as both clients read them.

Qoder pages with ``after_id`` / ``before_id`` and reads ``{data, first_id, last_id,
has_more}``; the anthropic SDK follows only ``next_page``, which it sends back as ``page``.
So every list answers all five fields and takes any one of the three: ``page`` goes on in
the direction the listing went (after the last item, or before the first).

An empty query value is no value: generated clients and HTML forms send ``?page=`` for a
cursor they do not have. A value with a pattern in the OpenAPI document is checked against
that pattern here, with a message naming it, and the pattern is the whole rule: a ``page``
of agents or environments, ``after.<id>`` or ``before.<id>``, is a position in id order
whether or not an item has that id, as Stripe's ``starting_after`` is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Generic, Protocol, TypeVar

import msgspec
from litestar.params import Parameter, ParameterKwarg, QueryParameter

from server.surfaces.qoder.errors import api_error
from streams.id_index import IdPage, Position

# The end of the text in Python and JSON Schema alike (``$`` lets a final line break through
# in Python, and Hypothesis generates one).
END = r"(?![\s\S])"
ID = "[A-Za-z0-9_-]{1,64}"  # a registry or engine id
PAGE_PATTERN = rf"^(?:(?:after|before)\.{ID})?{END}"
PAGE_SHAPE = "a next_page this API gave (after.<id> or before.<id>)"
_SHOWN = 80  # the most of a refused value a message repeats

_YEAR = "[1-9][0-9]{3}"
_LEAP_YEAR = "(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)"
_DATE = (
    f"(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    "|(?:0[13-9]|1[0-2])-(?:29|30)"
    "|(?:0[13578]|1[02])-31)"
    f"|{_LEAP_YEAR}-02-29)"
)
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_TIME = rf"[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{{1,9}})?)?{_OFFSET}?"
# Exactly the days there are (no 30 February, 29 February in leap years only), so every
# text the pattern admits is a moment.
TIME_PATTERN = f"^(?:{_DATE}(?:{_TIME})?)?{END}"
_TIME_SHAPE = "an RFC 3339 time like 2026-05-18T15:26:15Z, or a date like 2026-05-18"

Limit = Annotated[int, Parameter(ge=1, le=100, description="Items per page, 1-100.")]
Page = Annotated[
    str | None,
    Parameter(
        description="The next_page of the previous answer: after.<id> or before.<id>. Empty: none.",
        schema_extra={"pattern": PAGE_PATTERN},
    ),
]
AfterId = Annotated[
    str | None, Parameter(description="Items right after this id, in id order. Empty: none.")
]
BeforeId = Annotated[
    str | None, Parameter(description="Items right before this id, in id order. Empty: none.")
]


def _time(name: str, bound: str) -> ParameterKwarg:
    return QueryParameter(
        name=name,
        description=f"Only items created {bound} this time: {_TIME_SHAPE} (midnight), "
        "UTC unless an offset is given. Empty: none.",
        schema_extra={"pattern": TIME_PATTERN},
    )


CreatedFrom = Annotated[str | None, _time("created_at[gte]", "at or after")]
CreatedTo = Annotated[str | None, _time("created_at[lte]", "at or before")]


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


def present(value: str | None) -> str | None:
    """A query value as given, an empty one as none."""
    return value or None


def matching(value: str | None, param: str, pattern: str, shape: str) -> str | None:
    """``value`` (none when empty) if it matches ``pattern``; else a 400 saying ``shape``."""
    if not value:
        return None
    if re.match(pattern, value) is None:
        raise api_error(
            "invalid_request_error", f"{param} must be {shape}, got {shown(value)}", param=param
        )
    return value


def shown(value: str) -> str:
    """``value`` quoted as a message repeats it: whole, or its start and its length."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}… ({len(value)} characters)"


def one_of(**cursors: str | None) -> tuple[str, str] | None:
    """The one cursor given, as (name, value), of those a list takes; none, or a 400."""
    given = [(name, value) for name, value in cursors.items() if value]
    if len(given) > 1:
        names = " and ".join(name for name, _ in given)
        *most, last = cursors
        everyone = f"{', '.join(most)} and {last}"
        raise api_error(
            "invalid_request_error",
            f"give at most one of {everyone}, not {names}",
            param=given[1][0],
        )
    return given[0] if given else None


def position(page: str | None, after_id: str | None, before_id: str | None) -> Position:
    """Where the asked page starts, in id order; at most one of the three may be given."""
    page = matching(page, "page", PAGE_PATTERN, PAGE_SHAPE)
    cursor = one_of(page=page, after_id=after_id, before_id=before_id)
    if cursor is None:
        return Position()
    name, value = cursor
    if name == "page":
        direction, _, item = value.partition(".")
        return Position(after=item) if direction == "after" else Position(before=item)
    return Position(after=value) if name == "after_id" else Position(before=value)


def list_body(page: IdPage[E], where: Position, out: Callable[[E], W]) -> ListBody[W]:
    data = [out(item) for item in page.items]
    first_id = data[0].id if data else None
    last_id = data[-1].id if data else None
    next_page = None
    if page.more and first_id is not None and last_id is not None:
        next_page = f"after.{last_id}" if where.forward else f"before.{first_id}"
    return ListBody(data, first_id, last_id, page.more, next_page)


def moment_ms(value: str | None, param: str) -> int | None:
    """An RFC 3339 time or a date (midnight) in epoch ms, UTC unless it has an offset; none
    when empty."""
    text = matching(value, param, TIME_PATTERN, _TIME_SHAPE)
    if text is None:
        return None
    normal = text[:10] + text[10:].upper().replace(" ", "T").replace("Z", "+00:00")
    moment = datetime.fromisoformat(normal)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
