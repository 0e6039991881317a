"""Unit tests run without the caller's docker compose settings."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_compose_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """COMPOSE_PROJECT_NAME and COMPOSE_PROFILES in a developer's shell would change what the
    compose tests load (as they change what docker compose does)."""
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
