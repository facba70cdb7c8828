"""Model backends: each turns a :class:`~streams.backends.base.ModelRequest` into chunks."""
