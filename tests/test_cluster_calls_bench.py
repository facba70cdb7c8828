"""The client-choice benchmark (python -m server.bench.cluster_calls) runs every client."""

from __future__ import annotations

import subprocess
import sys

from tests.support.cluster import require_cluster_support


def test_the_cluster_calls_benchmark_measures_each_client() -> None:
    require_cluster_support()
    command = [sys.executable, "-m", "server.bench.cluster_calls", "--exchanges", "30"]
    done = subprocess.run([*command, "--rounds", "3"], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == [
        "parley",
        "redis-py",
        "redis-py-pipeline",
    ]
    assert all("us client CPU per call" in line for line in lines)
