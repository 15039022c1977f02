"""Handlers through the real Dispatcher and middlewares, with a recording bot session."""
