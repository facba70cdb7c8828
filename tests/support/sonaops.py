"""Sonaops tests: signing requests the way a Sonaops client does, and reading its envelopes
and SSE frames.

The signing here is written from Sonaops's published rules, on purpose apart from the
server's: a test that imported the server's code would agree with any mistake in it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.sse import SseEvent, iter_events

KEYS_TOML = """
[[keys]]
key = "sk-live-1"
principal = "acme"
secret = "s3cret"

[[keys]]
key = "sk-legacy-1"
principal = "legacy-co"
secret = "old-s3cret"
legacySignature = true

[[keys]]
key = "sk-plain-1"
principal = "plain-co"

[[keys]]
key = "sk-throttled-1"
principal = "throttled-co"
requestsPerSecond = 0.01
burst = 1

[[keys]]
key = "sk-capped-1"
principal = "capped-co"
maxConcurrentExchanges = 1

[[keys]]
key = "sk-metered-1"
principal = "metered-co"
exchangeQuota = 1
"""


def write_keys_file(directory: Path) -> str:
    path = directory / "keys.toml"
    path.write_text(KEYS_TOML)
    return str(path)


# --- the two schemes, from the rules ---------------------------------------------------------


def _field_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if value is True or value is False:
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def canonical_query(params: Mapping[str, str | None] | None) -> str:
    pairs = [(k, v) for k, v in (params or {}).items() if v is not None and v != ""]
    pairs.sort(key=lambda pair: pair[0].encode("ascii"))
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_body(body: Mapping[str, Any] | None) -> str:
    parts = []
    for name in sorted((body or {}).keys(), key=lambda k: k.encode("utf-8")):
        value = body[name] if body else None
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        parts.append(name + "=" + _field_text(value))
    return "&".join(parts)


def base_string(
    method: str,
    path: str,
    timestamp: str,
    user_id: str,
    query: Mapping[str, str | None] | None,
    body: Mapping[str, Any] | None,
) -> str:
    lines = [method, path, timestamp, user_id, canonical_query(query), canonical_body(body)]
    return "\n".join(lines)


def hmac_hex(secret: str, text: str) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def legacy_hex(secret: str, body: Mapping[str, Any] | None) -> str:
    return hashlib.sha256((canonical_body(body) + secret).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Signer:
    """A client holding ``key`` and its ``secret``."""

    key: str
    secret: str
    user_id: str = "user-123"

    def headers(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | None] | None = None,
        body: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        request_id: str | None = None,
    ) -> dict[str, str]:
        """The current scheme's headers; every call is a new request id."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        base = base_string(method, path, stamp, self.user_id, query, body)
        return {
            "Authorization": f"Bearer {self.key}",
            "X-Timestamp": stamp,
            "X-Signature": hmac_hex(self.secret, base),
            "X-Request-ID": request_id or str(uuid.uuid4()),
            "X-User-ID": self.user_id,
        }

    def legacy_headers(self, body: Mapping[str, Any] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-Signature": legacy_hex(self.secret, body)}


ACME = Signer("sk-live-1", "s3cret")
LEGACY = Signer("sk-legacy-1", "old-s3cret")


async def signed_post(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], signer: Signer = ACME
) -> httpx.Response:
    return await http.post(path, json=body, headers=signer.headers("POST", path, body=body))


async def new_conversation(
    http: httpx.AsyncClient, agent_id: str = "echo", signer: Signer = ACME
) -> str:
    response = await signed_post(http, "/v1/chat/conversation", {"agentId": agent_id}, signer)
    data = ok_data(response)
    conversation_id: str = data["conversationId"]
    return conversation_id


# --- the envelope ----------------------------------------------------------------------------


def check_envelope(body: dict[str, Any]) -> None:
    """Exactly the six fields; a 32-character traceId; a millisecond timestamp string."""
    assert list(body) == ["code", "success", "message", "data", "traceId", "timestamp"], body
    assert isinstance(body["traceId"], str) and len(body["traceId"]) == 32, body
    assert isinstance(body["timestamp"], str) and body["timestamp"].isdigit(), body
    assert abs(int(body["timestamp"]) - time.time() * 1000) < 60_000, body


def ok_data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    check_envelope(body)
    assert (body["code"], body["success"], body["message"]) == (10200, True, "OK"), body
    return body["data"]


def failed(body: dict[str, Any], code: int, message: str) -> None:
    check_envelope(body)
    assert {k: body[k] for k in ("code", "success", "message", "data")} == {
        "code": code,
        "success": False,
        "message": message,
        "data": None,
    }, body


def refused(response: httpx.Response, status: int, code: int, message: str) -> None:
    """A JSON envelope saying ``message``: HTTP ``status``, ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    failed(response.json(), code, message)


# --- streams ---------------------------------------------------------------------------------


@dataclass
class Frames:
    """One /v1/chat/stream as read, frame by frame, with the time each landed."""

    response: httpx.Response
    events: list[SseEvent] = field(default_factory=list)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [event.json() for event in self.events]

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return [b["data"] for b in self.bodies if b["success"] and not b["data"]["finished"]]

    @property
    def text(self) -> str:
        return "".join(chunk["delta"] for chunk in self.deltas)

    @property
    def final(self) -> dict[str, Any]:
        last = self.bodies[-1]
        assert last["success"] and last["data"]["finished"], last
        data: dict[str, Any] = last["data"]
        return data

    @property
    def ids(self) -> list[str]:
        return [event.id or "" for event in self.events]


def ends(event: SseEvent) -> bool:
    body = event.json()
    return not body["success"] or bool(body["data"]["finished"])


@asynccontextmanager
async def open_chat(
    http: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    signer: Signer = ACME,
    last_event_id: str | None = None,
) -> AsyncIterator[httpx.Response]:
    """A signed POST /v1/chat/stream left open; read it with :func:`read_frames`."""
    path = "/v1/chat/stream"
    headers = {"Accept": "text/event-stream", **signer.headers("POST", path, body=body)}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with http.stream("POST", path, json=body, headers=headers) as response:
        yield response


async def read_frames(response: httpx.Response, limit: int | None = None) -> Frames:
    """Frames as they land, up to the last one (or ``limit`` of them), pings skipped."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = Frames(response)
    async for event in iter_events(response):
        if not event.has_data:
            continue
        check_envelope(event.json())
        frames.events.append(event)
        if ends(event) or len(frames.events) == limit:
            break
    return frames


async def chat(
    http: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    signer: Signer = ACME,
    last_event_id: str | None = None,
) -> Frames:
    """A whole /v1/chat/stream, read frame by frame to its last."""
    async with open_chat(http, body, signer=signer, last_event_id=last_event_id) as response:
        return await read_frames(response)
