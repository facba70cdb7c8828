"""Engine errors. Each surface renders them in its own envelope and status code."""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(EngineError):
    code = "invalid_input"

    def __init__(
        self, message: str, *, code: str = "invalid_input", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.code = code


class NotFound(EngineError):
    code = "not_found"


class SessionBusy(EngineError):
    code = "session_busy"


class NotRunning(EngineError):
    code = "not_running"


class Conflict(EngineError):
    code = "conflict"


class Unavailable(EngineError):
    """Redis is unreachable: the caller should retry after ``retry_after`` seconds."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after
