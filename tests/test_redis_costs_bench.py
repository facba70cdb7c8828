"""The capacity plan's probe (python -m server.bench.redis_costs) measures a real run."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_redis_costs_probe_reports_what_a_delta_and_an_exchange_cost() -> None:
    command = [sys.executable, "-m", "server.bench.redis_costs", "-c", "20", "-d", "4"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(
        (name.strip(), float(value.replace(",", "")))
        for name, value in re.findall(r"^  (.+?)\s+([\d,.]+)$", done.stdout, re.MULTILINE)
    )
    assert figures["log entries (deltas and ends)"] > 100
    assert figures["Redis CPU us per entry, primaries"] > 0
    assert figures["client bytes in per entry"] > 100
    assert figures["bytes per replay log of a finished exchange"] > 0
    assert figures["bytes per session hash"] > 0
