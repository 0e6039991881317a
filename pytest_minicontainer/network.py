"""Publishing a container's port on the host's loopback (placeholder until issue 7 lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ContainerError

if TYPE_CHECKING:
    from .container import Container

__all__ = ["publish"]


def publish(container: Container, port: int) -> tuple[str, int]:
    raise ContainerError("publishing ports is not implemented yet")
