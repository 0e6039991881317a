"""Images from OCI layouts, archives and root filesystems, unpacked into the store.

The one entry point the engine needs is :func:`resolve`; the rest are the building blocks
(layer unpacking, reference parsing) that builds and commits reuse.
"""

from __future__ import annotations

from ._reference import ACCEPTED_FORMS, parse_reference
from ._resolve import resolve
from ._unpack import OPAQUE_XATTR, UnpackResult, unpack_layer

__all__ = ["ACCEPTED_FORMS", "OPAQUE_XATTR", "UnpackResult", "parse_reference", "resolve", "unpack_layer"]
