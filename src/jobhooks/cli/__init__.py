"""The ``jobhooks`` command line."""

from jobhooks.cli.app import app, main

__all__ = ["app", "main"]
