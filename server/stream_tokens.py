"""Short-lived stream tokens: what a browser's ``EventSource`` sends instead of an API key.

``EventSource`` cannot send headers, and a key in a URL ends up in proxy and access logs. So a
client posts its key in the ``Authorization`` header and gets back a token naming one
principal, one session and an expiry a few minutes away; ``GET …/stream?token=`` accepts that
token for that session only. A leaked token opens one session's stream until it expires.

A token is ``base64url(claims) "." base64url(HMAC-SHA256(secret, tag + base64url(claims)))``,
with the claims a JSON array ``[principal, sessionId, expiresMs]``. It can be used until it
expires, so the browser's own reconnects of one ``EventSource`` keep working.

Every worker must sign with the same secret. ``PARLEY_STREAM_TOKEN_SECRET`` sets it. Unset,
a random secret lives in Redis under the key prefix: ``SET NX`` then ``GET`` in one
transaction, so the first writer's secret is the one every worker uses. It is read each time
it is needed rather than once per process: that costs one round trip on a request that makes
several anyway, and no worker can hold on to a secret Redis has lost (a flushed Redis, or one
without persistence that restarted) and sign tokens its peers refuse. Nothing needs Redis at
start-up, and a token whose claims are already wrong (another session, expired) is refused
without asking Redis.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from server.settings import Settings
from streams.clock import now_ms
from streams.connect import RedisClient
from streams.guard import redis_guarded
from streams.keys import Keys

_TAG = b"parley.stream-token.v1."
_RENEW = "POST /v1/sessions/{id}/streamTokens for a new one"
_SHAPE = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")


class Claims(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    principal: str
    session_id: str
    expires_ms: int


@dataclass(frozen=True)
class Issued:
    token: str
    expires_ms: int


class SecretSource(Protocol):
    def secret(self) -> Awaitable[bytes]: ...


class FixedSecret:
    """The configured ``PARLEY_STREAM_TOKEN_SECRET``."""

    def __init__(self, value: str) -> None:
        self._value = value.encode()

    async def secret(self) -> bytes:
        return self._value


class RedisSecret:
    """A random secret kept in Redis, created by whichever worker asks first."""

    def __init__(self, redis: RedisClient, key: str) -> None:
        self._redis = redis
        self._key = key

    @redis_guarded
    async def secret(self) -> bytes:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key, secrets.token_hex(32), nx=True)
            pipe.get(self._key)
            _, value = await pipe.execute()
        return str(value).encode()


class StreamTokens:
    """Mints and checks stream tokens; ``clock`` gives epoch milliseconds."""

    def __init__(
        self, source: SecretSource, ttl_seconds: int, clock: Callable[[], int] = now_ms
    ) -> None:
        self._source = source
        self._ttl_ms = ttl_seconds * 1000
        self._clock = clock

    async def mint(self, principal: str, session_id: str) -> Issued:
        claims = Claims(principal, session_id, self._clock() + self._ttl_ms)
        body = _b64(msgspec.json.encode(claims))
        signature = _sign(await self._source.secret(), body)
        return Issued(f"{body}.{_b64(signature)}", claims.expires_ms)

    async def holder(self, token: str, session_id: str) -> str:
        """The principal ``token`` was minted for, if it is valid for ``session_id`` now."""
        body, signature, claims = _parse(token)
        if claims.session_id != session_id:
            raise PermissionDeniedException("this stream token is for another session")
        if claims.expires_ms <= self._clock():
            raise NotAuthorizedException(f"the stream token has expired; {_RENEW}")
        expected = _sign(await self._source.secret(), body)
        if not hmac.compare_digest(expected, signature):
            raise _invalid()
        return claims.principal


def stream_tokens(settings: Settings, redis: RedisClient, keys: Keys) -> StreamTokens:
    """Sign with the configured secret, or with the one every worker shares through Redis."""
    secret = settings.stream_token_secret
    source = FixedSecret(secret) if secret else RedisSecret(redis, keys.stream_token_secret())
    return StreamTokens(source, settings.stream_token_ttl_seconds)


def _sign(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, _TAG + body.encode(), hashlib.sha256).digest()


def _parse(token: str) -> tuple[str, bytes, Claims]:
    shape = _SHAPE.fullmatch(token)
    if shape is None:
        raise _invalid()
    body, signature = shape.groups()
    try:
        return body, _unb64(signature), msgspec.json.decode(_unb64(body), type=Claims)
    except (ValueError, binascii.Error, msgspec.DecodeError):
        raise _invalid() from None


def _invalid() -> NotAuthorizedException:
    return NotAuthorizedException(f"the stream token is not valid; {_RENEW}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
