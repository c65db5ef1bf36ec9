"""The HTTP API: check-in for orchestrators, operator endpoints, health and metrics."""

from jobhooks.api.app import create_app

__all__ = ["create_app"]
