"""What a format reader hands to the importer: an image described, not yet unpacked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["ImagePlan", "LayerPlan"]


@dataclass(frozen=True)
class LayerPlan:
    """One layer: its diff id (the store key), how to open its blob, what to verify."""

    diff_id: str
    open: Callable[[], IO[bytes]]
    name: str  # names the blob in error messages: "FILE:blobs/sha256/..." or "FILE:abc/layer.tar"
    blob_digest: str | None = None  # verified when known (OCI descriptors)
    media_type: str = ""
    size: int | None = None  # the blob's, from its descriptor


@dataclass(frozen=True)
class ImagePlan:
    digest: str
    config: dict[str, Any]  # the whole OCI/Docker image configuration
    layers: tuple[LayerPlan, ...]
    blobs: dict[str, bytes] = field(default_factory=dict)  # manifest/config bytes to keep
    tags: tuple[str, ...] = ()
    origin: str = ""  # "registry/repository" the blobs came from (a later push may mount them)
