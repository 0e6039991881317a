"""The build cache: step key -> image digest, kept in the shared store.

A key is the sha256 of the parent image's digest, the step as planned (its substituted text,
the ARG values a RUN sees) and, for COPY/ADD, the digest of the copied content (or of the
``--from`` image).  Entries live in the store's ``sources/`` map, which every session and
xdist worker on the machine shares and which ``prune`` cleans when the image is gone.  A
per-key file lock makes concurrent builders of the same step wait for the first one and then
take its result, so the step runs once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from ..errors import MiniContainerError
from ..image import Image
from ..store import Store

__all__ = ["CACHE_VERSION", "lookup", "record", "step_key"]

CACHE_VERSION = "minicontainer-build-v1"


def step_key(parent: Image, text: str, content: str = "", source_image: str = "") -> str:
    payload = [CACHE_VERSION, parent.digest, text, content, source_image]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _entry(key: str) -> str:
    return f"{CACHE_VERSION}\0{key}"


def lookup(store: Store, key: str, parent: Image) -> Image | None:
    """The cached result of step ``key`` on ``parent``, if its image and layers still exist."""
    digest = store.lookup_source(_entry(key))
    if digest is None:
        return None
    if digest == parent.digest:
        return parent  # a step that changed nothing
    try:
        image = store.complete_image(digest)
    except MiniContainerError:  # an unreadable record: a miss, the step runs again
        return None
    if image is None:
        return None
    return replace(image, reference="", host_dirs=image.host_dirs or parent.host_dirs)


def record(store: Store, key: str, image: Image) -> None:
    store.record_source(_entry(key), image.digest)
