"""``parley bench``: a load generator for Parley and the bare Litestar SSE baseline.

The CLI integrates it with :func:`add_bench_arguments` and :func:`run_bench`.
"""

from server.bench.command import add_bench_arguments, run_bench

__all__ = ["add_bench_arguments", "run_bench"]
