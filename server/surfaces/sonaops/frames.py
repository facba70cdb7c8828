"""Sonaops's SSE blocks: an ``id:`` (the engine's event id, for ``Last-Event-ID``) and one
``data:`` line holding an envelope. No ``event:`` line: every frame is a ``message``.

A frame's envelope is rendered once per event (:class:`Head`) and shared by every watcher;
only ``traceId``, which is each request's own, is spliced in per request.
"""

from __future__ import annotations

from typing import Any

import msgspec

from server.surfaces.sonaops.envelope import Envelope, Head

PING = b": ping\n\n"
_encode = msgspec.json.Encoder().encode


def head_bytes(head: Head) -> bytes:
    return _encode(head)


def event_frame(event_id: str, head: bytes, trace_id: str, ms: int) -> bytes:
    """``head`` is an encoded :class:`Head`; ``traceId`` and ``timestamp`` close it."""
    tail = b',"traceId":' + _encode(trace_id) + b',"timestamp":"' + str(ms).encode() + b'"}'
    return b"id: " + event_id.encode() + b"\ndata: " + head[:-1] + tail + b"\n\n"


def envelope_frame(envelope: Envelope[Any]) -> bytes:
    """A frame outside any event (an error before the stream began): it has no id."""
    return b"data: " + _encode(envelope) + b"\n\n"
