"""pytest-minicontainer: a clean, throw-away Linux container for every test.

The public names are re-exported here; everything else is an implementation detail.
"""

from __future__ import annotations

from .container import Change, Container, ExecResult, Mount, Process
from .engine import Engine
from .errors import (
    BuildError,
    ContainerError,
    ExecError,
    ExecTimeout,
    ImageError,
    ImageNotFound,
    MiniContainerError,
    RuntimeUnavailable,
    StoreError,
)
from .image import HealthCheck, Image, ImageConfig

__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "Change",
    "Container",
    "ContainerError",
    "Engine",
    "ExecError",
    "ExecResult",
    "ExecTimeout",
    "HealthCheck",
    "Image",
    "ImageConfig",
    "ImageError",
    "ImageNotFound",
    "MiniContainerError",
    "Mount",
    "Process",
    "RuntimeUnavailable",
    "StoreError",
    "__version__",
]
