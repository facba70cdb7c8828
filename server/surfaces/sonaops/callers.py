"""Who is calling: the Bearer key, then, for a key with a secret, its request signature and
request id. Every refusal is a 401 naming what is wrong; nothing names the key or secret.

The scheme is chosen by presence: a request with ``X-Timestamp`` is checked by the current
scheme; one without it by the legacy scheme, if the key allows it. A key with no secret is
admitted by its Bearer key alone, as on every other surface. The signature is checked before
the request id is recorded, so a forged request cannot burn an id.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.exceptions import NotAuthorizedException

from server.auth import Authenticator, Nonces, bearer
from server.keyring import ApiKey
from server.surfaces.errors import SurfaceError
from server.surfaces.sonaops.errors import invalid, unauthorized
from server.surfaces.sonaops.signing import (
    NotAnObject,
    canonical_body,
    canonical_query,
    current_signature,
    legacy_signature,
    same,
    signature_base,
)

CLOCK_SKEW_SECONDS = 300
NONCE_SECONDS = 600
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def header(request: Request[Any, Any, Any], name: str) -> str | None:
    """A header as the client wrote it (UTF-8), stripped; None when absent or blank."""
    wanted = name.lower().encode()
    for key, value in request.scope["headers"]:
        if key == wanted:
            return value.decode(errors="replace").strip() or None
    return None


def identify(auth: Authenticator, request: Request[Any, Any, Any]) -> ApiKey:
    key = bearer(request)
    if auth.enabled and not key:
        raise unauthorized("Authorization header is required: Bearer <apiKey>")
    try:
        return auth.identify(request, key)
    except NotAuthorizedException:
        raise unauthorized("Invalid API key") from None


@dataclass(frozen=True)
class Signed:
    """The signature headers of one request."""

    timestamp: str | None
    signature: str | None
    request_id: str | None
    user_id: str | None

    @classmethod
    def of(cls, request: Request[Any, Any, Any]) -> Signed:
        return cls(
            timestamp=header(request, "X-Timestamp"),
            signature=header(request, "X-Signature"),
            request_id=header(request, "X-Request-ID"),
            user_id=header(request, "X-User-ID"),
        )


async def verify(request: Request[Any, Any, Any], api_key: ApiKey, nonces: Nonces) -> None:
    """Refuse a request whose signature the key's secret does not make, or a replay."""
    secret = api_key.secret
    if secret is None:
        return
    signed = Signed.of(request)
    if signed.timestamp is not None:
        await _check_current(request, signed, secret)
    elif api_key.legacy_signature:
        await _check_legacy(request, signed, secret)
    else:
        raise _missing("X-Timestamp")
    if signed.request_id is not None:
        await _first_use(nonces, api_key.principal, signed.request_id)


async def _check_current(request: Request[Any, Any, Any], signed: Signed, secret: str) -> None:
    timestamp = _required(signed.timestamp, "X-Timestamp")
    signature = _required(signed.signature, "X-Signature")
    request_id = _required(signed.request_id, "X-Request-ID")
    user_id = _required(signed.user_id, "X-User-ID")
    _check_request_id(request_id)
    _check_clock(timestamp)
    query = canonical_query(parse_qsl(request.scope["query_string"].decode(errors="replace"), True))
    body = await _canonical_body(request)
    base = signature_base(request.method, request.scope["path"], timestamp, user_id, query, body)
    if not same(current_signature(secret, base), signature):
        raise unauthorized("X-Signature does not match the request")


async def _check_legacy(request: Request[Any, Any, Any], signed: Signed, secret: str) -> None:
    signature = _required(signed.signature, "X-Signature")
    if signed.request_id is not None:
        _check_request_id(signed.request_id)
    if not same(legacy_signature(secret, await _canonical_body(request)), signature):
        raise unauthorized("X-Signature does not match the request")


async def _canonical_body(request: Request[Any, Any, Any]) -> str:
    """The body's canonical form; a body that has none is refused as invalid (10400)."""
    try:
        return canonical_body(await request.body())
    except NotAnObject as error:
        raise invalid(str(error)) from None


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise _missing(name)
    return value


def _missing(name: str) -> SurfaceError:
    return unauthorized(f"{name} header is required for a key with a secret")


def _check_request_id(request_id: str) -> None:
    if not _REQUEST_ID.fullmatch(request_id):
        raise unauthorized("X-Request-ID must be 1-128 letters, digits, '.', '_', ':' or '-'")


def _check_clock(timestamp: str) -> None:
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise unauthorized("X-Timestamp must be Unix time in seconds")
    if abs(int(time.time()) - int(timestamp)) > CLOCK_SKEW_SECONDS:
        raise unauthorized(
            f"X-Timestamp has expired: it must be within {CLOCK_SKEW_SECONDS} s of server time"
        )


async def _first_use(nonces: Nonces, principal: str, request_id: str) -> None:
    if not await nonces.first_use(principal, request_id, NONCE_SECONDS):
        raise unauthorized("X-Request-ID has already been used")
