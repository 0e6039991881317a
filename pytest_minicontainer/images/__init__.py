"""Images from OCI layouts, archives and root filesystems, unpacked into the store.

The one entry point the engine needs to get an image is :func:`resolve`; the rest are the
building blocks that builds, commits and containers reuse: layer unpacking and import, reference
parsing, an image's files read on the host (:class:`ImageView`), the init layer every container
gets, and the removal of ``RUN --mount`` stubs.  Other packages import these names from here,
never from the modules, which are this package's own.
"""

from __future__ import annotations

from ._import import chain_id, import_layer
from ._init_layer import init_files, init_layer
from ._plan import ImagePlan, LayerPlan
from ._reference import ACCEPTED_FORMS, parse_reference
from ._resolve import resolve
from ._stubs import drop_mount_stubs
from ._unpack import MAX_LAYER_ENV, OPAQUE_XATTR, UnpackResult, max_layer_size, unpack_layer
from ._view import ImageView, is_opaque, is_whiteout

__all__ = ["ACCEPTED_FORMS", "MAX_LAYER_ENV", "OPAQUE_XATTR", "ImagePlan", "ImageView", "LayerPlan", "UnpackResult",
           "chain_id", "drop_mount_stubs", "import_layer", "init_files", "init_layer", "is_opaque", "is_whiteout",
           "max_layer_size", "parse_reference", "resolve", "unpack_layer"]
