"""Sonaops request signatures, as pure functions of the request's parts.

Current scheme: ``X-Signature`` = lowercase hex HMAC-SHA256, keyed with the API secret, of
``METHOD\\nPATH\\nX-Timestamp\\nX-User-ID\\ncanonicalQuery\\ncanonicalBody``. Legacy scheme:
plain SHA-256 hex of ``canonicalBody + secret``. The canonical forms drop empty values and
sort by key, so a client and the server agree whatever order they wrote fields in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any


class NotAnObject(ValueError):
    """A body that is neither empty nor a JSON object has no canonical form."""


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """``k=v&k=v`` sorted by key (a repeated key keeps its order), raw values, empties out."""
    kept = sorted(((k, v) for k, v in pairs if v != ""), key=lambda pair: pair[0])
    return "&".join(f"{key}={value}" for key, value in kept)


def canonical_body(body: bytes) -> str:
    """Top-level fields, sorted: strings trimmed, anything else as compact JSON; null, ""
    and blank strings left out. ``""`` for no body."""
    if not body.strip():
        return ""
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise NotAnObject("the request body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise NotAnObject("the request body must be a JSON object")
    kept = {key: _text(value) for key, value in fields.items() if _kept(value)}
    return "&".join(f"{key}={kept[key]}" for key in sorted(kept))


def _kept(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def signature_base(
    method: str, path: str, timestamp: str, user_id: str, query: str, body: str
) -> str:
    return "\n".join((method.upper(), path, timestamp, user_id, query, body))


def current_signature(secret: str, base: str) -> str:
    return hmac.new(secret.encode(), base.encode(), hashlib.sha256).hexdigest()


def legacy_signature(secret: str, body: str) -> str:
    return hashlib.sha256((body + secret).encode()).hexdigest()


def same(expected: str, given: str) -> bool:
    """Constant-time comparison; hex case does not matter."""
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())
