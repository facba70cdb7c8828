"""API keys. Each key maps to a principal that owns the sessions it creates.

Every surface finds the key its own way (a Bearer header, a query parameter, a signed
request) and asks :meth:`Authenticator.principal` who it belongs to.
"""

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

    def principal(self, request: Request[Any, Any, Any], key: str | None) -> str:
        """Whose ``key`` this is; with authentication off, anyone on loopback is anonymous."""
        if not self._keys:
            self._require_loopback(request)
            return ANONYMOUS
        if key:
            candidate = key.encode()
            for known, principal in self._keys:
                if hmac.compare_digest(candidate, known):
                    return principal
        raise NotAuthorizedException("a valid API key is required: Authorization: Bearer <key>")

    def _require_loopback(self, request: Request[Any, Any, Any]) -> None:
        server = request.scope.get("server")
        if self._allow_remote or not server or server[0] in LOOPBACK:
            return
        raise PermissionDeniedException(
            "authentication is off, so this server only answers on loopback"
        )


def bearer(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
