"""Free TCP ports for the servers the tests start (never 6379)."""

from server.embedded_redis import free_port

__all__ = ["free_port"]
