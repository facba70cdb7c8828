"""Who is calling, and whether they may right now.

Every surface finds the key its own way (a Bearer header, an ``X-API-Key``, a signed request)
and asks :meth:`Authenticator.admit`: the key's principal, once its request is inside the
principal's rate limit. The bucket's state rides on the request, so every answer carries the
``RateLimit-*`` headers (:func:`server.request_id.add_response_headers`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from server.keyring import ANONYMOUS, ANONYMOUS_KEY, ApiKey, Keyring
from server.request_id import add_response_headers
from server.settings import LOOPBACK
from streams.connect import RedisClient
from streams.errors import RateLimited
from streams.guard import redis_guarded
from streams.keys import Keys
from streams.quotas import Quotas

__all__ = ["ANONYMOUS", "Authenticator", "Nonces", "bearer"]


class Nonces:
    """Request ids seen lately, kept in Redis so that every worker refuses the same replay."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    @redis_guarded
    async def first_use(self, principal: str, request_id: str, keep_seconds: int) -> bool:
        """Record ``request_id``; False when it was already used within ``keep_seconds``."""
        key = self._keys.nonce(principal, request_id)
        return bool(await self._redis.set(key, 1, nx=True, ex=keep_seconds))


class Authenticator:
    def __init__(
        self, keyring: Keyring, quotas: Quotas, nonces: Nonces, *, allow_remote: bool
    ) -> None:
        self.keyring = keyring
        self.nonces = nonces
        self.quotas = quotas
        self._allow_remote = allow_remote

    @property
    def enabled(self) -> bool:
        return self.keyring.enabled

    def identify(self, request: Request[Any, Any, Any], key: str | None) -> ApiKey:
        """Whose ``key`` this is; with authentication off, anyone on loopback is anonymous."""
        if not self.keyring.enabled:
            self._require_loopback(request)
            return ANONYMOUS_KEY
        found = self.keyring.find(key) if key else None
        if found is None:
            raise NotAuthorizedException("a valid API key is required: Authorization: Bearer <key>")
        return found

    async def admit(self, request: Request[Any, Any, Any], key: str | None) -> str:
        """The principal of ``key``, once this request fits its rate limit."""
        return await self.admitted(request, self.identify(request, key))

    async def admitted(self, request: Request[Any, Any, Any], api_key: ApiKey) -> str:
        """Take this request from the rate limit of a key already identified."""
        return await self._take(request, api_key.principal)

    async def admit_principal(self, request: Request[Any, Any, Any], principal: str) -> str:
        """As :meth:`admit`, for a principal this server vouched for without a key (a stream
        token it signed): the same loopback rule and rate limit, while it still has a key."""
        if not self.keyring.knows(principal):
            raise NotAuthorizedException("the principal of this token has no key any more")
        if not self.keyring.enabled:
            self._require_loopback(request)
        return await self._take(request, principal)

    async def _take(self, request: Request[Any, Any, Any], principal: str) -> str:
        try:
            state = await redis_guarded(self.quotas.take_request)(principal)
        except RateLimited as refused:
            add_response_headers(request.scope, refused.limit_headers)
            raise
        if state is not None:
            add_response_headers(request.scope, state.headers())
        return principal

    async def admin(self, request: Request[Any, Any, Any], key: str | None) -> str:
        """As :meth:`admit`, for a key with the admin role (anyone, with authentication off)."""
        api_key = self.identify(request, key)
        if not self.may_administer(api_key):
            raise PermissionDeniedException('this needs an admin key (role = "admin")')
        return await self.admitted(request, api_key)

    def may_administer(self, api_key: ApiKey) -> bool:
        """Whether ``api_key`` has the admin role; with authentication off, anyone does."""
        return not self.keyring.enabled or api_key.role == "admin"

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
