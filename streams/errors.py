"""Engine errors, in domain terms. Each surface renders them in its own envelope and status.

``kind`` picks the status from the shared table in ``server.surfaces.errors``; ``code`` is
the specific reason; ``details`` use the engine's own names (``session_id``, ``agent_id``,
``exchange_id``, ``field``...), which each surface maps onto its API's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

ErrorKind = Literal[
    "invalid",
    "not_found",
    "busy",
    "not_running",
    "conflict",
    "unavailable",
    "rate_limited",
    "quota_exceeded",
    "internal",
]
Resource = Literal[
    "session", "exchange", "agent", "agent_version", "archive", "principal", "environment"
]


class EngineError(Exception):
    kind: ClassVar[ErrorKind] = "internal"
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def describe(self, labels: Mapping[str, str]) -> str:
        """The message with the engine's field names replaced by a surface's ``labels``."""
        return self.message


class InvalidInput(EngineError):
    """``field`` leads the message, so each surface can name it its own way."""

    kind = "invalid"
    code = "invalid_input"

    def __init__(
        self,
        problem: str,
        *,
        field: str | None = None,
        code: str = "invalid_input",
        details: dict[str, Any] | None = None,
    ) -> None:
        self.problem = problem
        self.field = field
        named = {"field": field} if field else {}
        super().__init__(self.describe({}), details={**named, **(details or {})})
        self.code = code

    def describe(self, labels: Mapping[str, str]) -> str:
        if self.field is None:
            return self.problem
        return f"{labels.get(self.field, self.field)} {self.problem}"


class NotFound(EngineError):
    kind = "not_found"
    code = "not_found"

    def __init__(
        self, message: str, *, resource: Resource, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.resource = resource


class Archived(EngineError):
    """A change to something archived: it can still be read (and deleted), not changed.

    ``code`` names what: ``environment_archived``, ``agent_archived``.
    """

    kind = "invalid"

    def __init__(
        self, message: str, *, resource: Resource, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.resource = resource
        self.code = f"{resource}_archived"


class SessionBusy(EngineError):
    kind = "busy"
    code = "session_busy"


class NotRunning(EngineError):
    kind = "not_running"
    code = "not_running"


class Conflict(EngineError):
    kind = "conflict"
    code = "conflict"


class Unavailable(EngineError):
    """Redis is unreachable: the caller should retry after ``retry_after`` seconds."""

    kind = "unavailable"
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(EngineError):
    """Too many requests, or too many exchanges running at once, for one principal."""

    kind: ClassVar[ErrorKind] = "rate_limited"

    def __init__(
        self, message: str, *, code: str, retry_after: int, limit_headers: dict[str, str]
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after
        self.limit_headers = limit_headers


class QuotaExceeded(RateLimited):
    """A principal's usage quota is spent; ``retry_after`` is when its window resets (0: never)."""

    kind: ClassVar[ErrorKind] = "quota_exceeded"
