"""Request bodies, decoded here rather than by Litestar so that a bad one is a 400
``invalid_request_error`` whose ``param`` names the field, as Anthropic's API answers.

A number with no fraction (``826.0``) is an integer, as JSON Schema counts it, so an
integer field takes it; a string of digits stays no integer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request

from server.surfaces.errors import readable
from server.surfaces.qoder.errors import api_error
from streams.limits import MAX_METADATA, check_metadata

S = TypeVar("S")
_FLOAT_FOR_INT = re.compile(r"Expected `([^`]*)`, got `float` - at `\$((?:\.\w+|\[\d+\])*)`")
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")
_MAX_FIXES = 16  # integer fields a body may fill with whole floats

# A metadata patch, as the OpenAPI document states it: a key that breaks the key rule (empty,
# over 64 characters, a control character) may only be deleted, and is then never stored.
_BAD_KEY = r"^$|[\x00-\x1f\x7f]|^[\s\S]{65}"
_PATCH = (
    f"Pairs to set, a null value deleting its key; keys 1-64 characters without control "
    f"characters, values up to 512; at most {MAX_METADATA} pairs once patched."
)
Value = Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": 512})]
MetadataPatch = Annotated[
    dict[str, Value | None],
    msgspec.Meta(
        description=_PATCH,
        extra_json_schema={"patternProperties": {_BAD_KEY: {"type": "null"}}},
    ),
]
# Environments delete a key set to "" as well.
EnvironmentMetadataPatch = Annotated[
    dict[str, Value | None],
    msgspec.Meta(
        description=_PATCH.replace("a null value", 'a null or "" value'),
        extra_json_schema={
            "patternProperties": {_BAD_KEY: {"anyOf": [{"type": "null"}, {"const": ""}]}}
        },
    ),
]


async def read_body(request: Request[Any, Any, Any], kind: type[S]) -> S:
    """The body as ``kind``; an empty body reads as ``{}``."""
    return decode_body(await request.body(), kind)


def decode_body(raw: bytes, kind: type[S]) -> S:
    try:
        tree = msgspec.json.decode(raw or b"{}")
    except msgspec.DecodeError as error:
        message = f"the request body is not valid JSON: {error}"
        raise api_error("invalid_request_error", message) from None
    for _ in range(_MAX_FIXES):
        try:
            return msgspec.convert(tree, kind)
        except msgspec.ValidationError as error:
            if not _made_whole(tree, str(error)):
                problem, param = _located(str(error))
                message = f"{param}: {readable(problem)}" if param else readable(problem)
                raise api_error("invalid_request_error", message, param=param) from None
    raise api_error("invalid_request_error", "the request body has too many numbers to read")


def _made_whole(tree: Any, error: str) -> bool:
    """Whether the float an integer field was refused is whole, now made an int in place."""
    refused = _FLOAT_FOR_INT.fullmatch(error)
    if refused is None or "int" not in refused[1].split(" | "):
        return False
    *path, last = [name or int(index) for name, index in _STEP.findall(refused[2])] or [None]
    if last is None:
        return False
    parent = tree
    for step in path:
        parent = parent[step]
    value = parent[last]
    if not isinstance(value, float) or not value.is_integer():
        return False
    parent[last] = int(value)
    return True


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
