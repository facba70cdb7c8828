"""Structured logs: one JSON object per line on stderr, quiet unless something happens."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import msgspec

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_UVICORN_NOISE = "ASGI callable returned without completing response."
# HTTP clients and model SDKs log requests (headers included) at debug level: keep them quiet.
_QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "anthropic")
# Query parameters that carry credentials: a stream token, or a key someone put in a URL.
_CREDENTIAL = re.compile(r"([?&](?:token|access_token|api_key|apikey|key)=)[^&\s\"]*", re.I)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class _DropClosedStreamNoise(logging.Filter):
    """A stream we cut off for not reading is logged by us; uvicorn's echo of it is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _UVICORN_NOISE


class _RedactCredentials(logging.Filter):
    """uvicorn's access log prints each request's path with its query string (on unless
    ``--no-access-log``; ``parley serve`` turns it off): blank the credentials in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(value: object) -> object:
    return _CREDENTIAL.sub(r"\1[redacted]", value) if isinstance(value, str) else value


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("parley")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("uvicorn.error").addFilter(_DropClosedStreamNoise())
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactCredentials) for f in access.filters):
        access.addFilter(_RedactCredentials())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
