"""Where things live by default; a light module the plugin can import without the engine."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_store_path"]


def default_store_path() -> Path:
    """``$MINICONTAINER_STORE``, else ``$XDG_CACHE_HOME/pytest-minicontainer`` (~/.cache)."""
    env = os.environ.get("MINICONTAINER_STORE")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pytest-minicontainer"
