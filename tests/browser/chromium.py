"""Where the browser comes from: Debian's Chromium, never one Playwright downloads.

Kept free of any `playwright` import, so the tests can say why they skip when it is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def why_no_browser() -> str | None:
    """The one-line reason the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "browser tests skipped: the `playwright` package is not installed (dev extras)"
    if not CHROMIUM.exists():
        return f"browser tests skipped: {CHROMIUM} not found (Debian package `chromium`)"
    return None
