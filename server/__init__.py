"""Parley over HTTP: the Litestar app, its API surfaces, SSE framing and the CLI."""
