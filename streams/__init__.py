"""Parley's engine: sessions, exchanges, the Redis store, the pub/sub hub and model backends.

Nothing here imports HTTP code; ``server`` maps wire formats onto :mod:`streams.service`.
"""
