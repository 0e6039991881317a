"""pytest-minicontainer: a clean, throw-away Linux container for every test.

The public names are re-exported here; everything else is an implementation detail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Names are imported on first use (PEP 562): the runtime's zygote imports this package too,
# and every module it holds makes each container's fork slower.
_EXPORTS = {
    "Change": "container", "Container": "container", "ExecResult": "container", "Mount": "container",
    "Process": "container", "Engine": "engine", "HealthCheck": "image", "Image": "image",
    "ImageConfig": "image", "BuildError": "errors", "ComposeError": "errors", "ContainerError": "errors",
    "ExecError": "errors", "ExecTimeout": "errors", "ImageError": "errors", "ImageNotFound": "errors",
    "MiniContainerError": "errors", "RegistryError": "errors", "RuntimeUnavailable": "errors", "StoreError": "errors",
    "WaitTimeout": "errors", "Network": "networks", "RunOptions": "options",
    "RegistryOptions": "images.registry",
}

if TYPE_CHECKING:
    from .container import Change, Container, ExecResult, Mount, Process
    from .engine import Engine
    from .errors import (
        BuildError,
        ComposeError,
        ContainerError,
        ExecError,
        ExecTimeout,
        ImageError,
        ImageNotFound,
        MiniContainerError,
        RegistryError,
        RuntimeUnavailable,
        StoreError,
        WaitTimeout,
    )
    from .image import HealthCheck, Image, ImageConfig
    from .images.registry import RegistryOptions
    from .networks import Network
    from .options import RunOptions


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_minicontainer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "Change",
    "ComposeError",
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
    "Network",
    "Process",
    "RegistryError",
    "RegistryOptions",
    "RunOptions",
    "RuntimeUnavailable",
    "StoreError",
    "WaitTimeout",
    "__version__",
]
