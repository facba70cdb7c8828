"""What a surface's errors and credentials look like, as its OpenAPI operations show them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Any operation: bad parameters, a missing or refused key, a rate limit or quota, headers
# past the limit, Redis away.
COMMON_ERRORS = (400, 401, 429, 431, 503)
BODY_ERRORS = (413,)  # an operation that reads a body
PATH_ERRORS = (404,)  # an operation on a resource named in its path

BEARER = {"bearer": {"type": "http", "scheme": "bearer"}}


def api_key_header(name: str) -> dict[str, dict[str, str]]:
    return {name.lower(): {"type": "apiKey", "in": "header", "name": name}}


@dataclass(frozen=True)
class Contract:
    """A surface's error envelope, its credentials and the statuses it answers errors with.

    ``error_body`` is a type msgspec can describe, or a tuple of such when any of them may
    come (msgspec describes only tagged unions of Structs). ``bodies`` names statuses
    answered with another body, as Agno's 422 list. ``security`` holds OpenAPI security
    schemes, any one of which admits a request. ``common`` are the statuses any operation may
    answer; ``body_errors`` those of one that reads a body; ``path_errors`` those of one on a
    resource its path names.
    """

    error_body: Any
    bodies: Mapping[int, Any] = field(default_factory=dict)
    security: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    common: tuple[int, ...] = COMMON_ERRORS
    body_errors: tuple[int, ...] = BODY_ERRORS
    path_errors: tuple[int, ...] = PATH_ERRORS

    def statuses(self, path: str, reads_body: bool, declared: tuple[int, ...]) -> list[int]:
        statuses = {*self.common, *self.bodies, *declared}
        if reads_body:
            statuses.update(self.body_errors)
        if "{" in path:
            statuses.update(self.path_errors)
        return sorted(statuses)
