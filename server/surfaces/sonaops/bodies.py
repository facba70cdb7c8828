"""Request bodies and query values read in Sonaops's words: ``agentId is required``,
``pageSize must be an integer from 1 to 100``. Handlers read them after the caller is
admitted, so an unauthenticated request learns nothing about its body."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request

from server.surfaces.sonaops.errors import invalid

T = TypeVar("T")
_TYPE = re.compile(r"^Expected `([^`]+)`, got `([^`]+)` - at `\$\.([^`]+)`$")
_KINDS = {"str": "a string", "int": "an integer", "bool": "a boolean", "object": "an object"}


async def read_body(request: Request[Any, Any, Any], kind: type[T]) -> T:
    body = await request.body()
    if not _is_utf8(body):
        raise invalid("the request body is not valid JSON: it is not UTF-8")
    try:
        return msgspec.json.decode(body if body.strip() else b"{}", type=kind)
    except msgspec.ValidationError as error:
        raise invalid(_readable(str(error))) from None
    except msgspec.DecodeError:
        raise invalid("the request body is not valid JSON") from None


def _is_utf8(body: bytes) -> bool:
    """msgspec skips unknown fields, and this API ignores them, without reading their bytes."""
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _readable(message: str) -> str:
    """msgspec's ``Expected `str | null`, got `int` - at `$.agentId``` as ``agentId must be
    a string, not int``."""
    match = _TYPE.match(message)
    if match is None:
        return "the request body must be a JSON object" if "- at" not in message else message
    expected, got, field = match.groups()
    kind = expected.removesuffix(" | null")
    return f"{field} must be {_KINDS.get(kind, kind)}, not {got}"


def required_text(value: str | None, name: str) -> str:
    """A field that must hold something (blank counts as missing), kept as sent."""
    if value is None or not value.strip():
        raise invalid(f"{name} is required")
    return value


def required_id(value: str | None, name: str) -> str:
    """An id, trimmed as the signature's canonical body trims it."""
    return required_text(value, name).strip()


def query_int(raw: str | None, name: str, default: int, high: int) -> int:
    """A query value from 1 to ``high``; ``default`` when absent or empty."""
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= high:
        raise invalid(f"{name} must be an integer from 1 to {high}")
    return int(raw)
