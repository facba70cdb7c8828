"""Request bodies, decoded here rather than by Litestar so that a bad one is a 400
``invalid_request_error`` whose ``param`` names the field, as Anthropic's API answers."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from server.surfaces.errors import readable
from server.surfaces.qoder.errors import api_error
from streams.limits import check_metadata

S = TypeVar("S")


async def read_body(request: Request[Any, Any, Any], kind: type[S]) -> S:
    """The body as ``kind``; an empty body reads as ``{}``."""
    return decode_body(await request.body(), kind)


def decode_body(raw: bytes, kind: type[S]) -> S:
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as error:
        problem, param = _located(str(error))
        message = f"{param}: {readable(problem)}" if param else readable(problem)
        raise api_error("invalid_request_error", message, param=param) from None
    except msgspec.DecodeError as error:
        message = f"the request body is not valid JSON: {error}"
        raise api_error("invalid_request_error", message) from None


def checked_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """``metadata`` within Parley's limits (Anthropic's too: 16 pairs, 64/512 chars)."""
    try:
        check_metadata(metadata)
    except ValueError as error:
        raise api_error("invalid_request_error", str(error), param="metadata") from None
    return metadata


def _located(text: str) -> tuple[str, str | None]:
    """msgspec's ``problem - at `$.a.b``` as (problem, ``a.b``), with an unknown or missing
    field's own name appended, since msgspec places those at their parent."""
    problem, _, where = text.partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    for opening in ("Object contains unknown field `", "Object missing required field `"):
        if problem.startswith(opening):
            name = problem.removeprefix(opening).rstrip("`")
            path = f"{path}.{name}" if path else name
    return problem, path or None
