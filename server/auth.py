"""Bearer API keys. Each key maps to a principal that owns the sessions it creates."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from server.settings import LOOPBACK, Settings

ANONYMOUS = "anonymous"


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._keys = [(k.encode(), p) for k, p in settings.principals().items()]
        self._allow_remote = settings.allow_insecure

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def principal(self, request: Request[Any, Any, Any]) -> str:
        """The dependency every ``/v1`` handler takes."""
        if not self._keys:
            self._require_loopback(request)
            return ANONYMOUS
        token = _bearer(request.headers.get("authorization"))
        if token is None and request.method == "GET":
            # EventSource cannot send headers; it may pass the key in the query instead.
            token = request.query_params.get("access_token")
        if token:
            candidate = token.encode()
            for key, principal in self._keys:
                if hmac.compare_digest(candidate, key):
                    return principal
        raise NotAuthorizedException("a valid API key is required: Authorization: Bearer <key>")

    def _require_loopback(self, request: Request[Any, Any, Any]) -> None:
        server = request.scope.get("server")
        if self._allow_remote or not server or server[0] in LOOPBACK:
            return
        raise PermissionDeniedException(
            "authentication is off, so this server only answers on loopback"
        )


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
