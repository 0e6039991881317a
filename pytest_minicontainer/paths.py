"""Where things live by default, and the environment variables that say otherwise; a light
module the plugin can import without the engine."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_FROM_ENV", "CACHE_TO_ENV", "default_store_path"]

# Defaults of a build's cache_from / cache_to: the pytest options set them, so that every build
# of a session (its xdist workers', compose's) shares one registry build cache.
CACHE_FROM_ENV = "MINICONTAINER_CACHE_FROM"
CACHE_TO_ENV = "MINICONTAINER_CACHE_TO"


def default_store_path() -> Path:
    """``$MINICONTAINER_STORE``, else ``$XDG_CACHE_HOME/pytest-minicontainer`` (~/.cache)."""
    env = os.environ.get("MINICONTAINER_STORE")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pytest-minicontainer"
