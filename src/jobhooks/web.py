"""The web app of a running process: the HTTP API with the operator dashboard mounted."""

from __future__ import annotations

from jobhooks import ui
from jobhooks.api import create_app as create_api
from jobhooks.api.hosts import HostCheck
from jobhooks.service.runtime import Runtime

__all__ = ["create_app"]


def create_app(runtime: Runtime) -> HostCheck:
    """The API and the dashboard (``/ui/``) for ``runtime``; the app's lifespan starts and
    stops the runtime."""
    return create_api(runtime, extensions=[ui.install])
