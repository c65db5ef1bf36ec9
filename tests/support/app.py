"""The API app driven in this process, with a token of each kind."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

from jobhooks.service.runtime import Runtime

with warnings.catch_warnings():
    # Starlette would rather drive the app through httpx2; httpx is what is installed.
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["Api", "TestClient"]


@dataclass
class Api:
    """A TestClient on the app, the runtime behind it, and headers for each token."""

    client: TestClient
    runtime: Runtime
    directory: Path
    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        """``Authorization`` header of the ``admin``, ``viewer``, ``agent`` or ``agent_b`` token."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def stored(self) -> list[dict[str, Any]]:
        """Every completion stored (as the operator API lists them)."""
        response = self.client.get(
            "/api/v1/job-completions", params={"limit": 500}, headers=self.auth("admin")
        )
        assert response.status_code == 200
        items: list[dict[str, Any]] = response.json()["items"]
        return items
