"""The content-addressed store of image blobs and unpacked layers (no namespaces, no OCI).

See :mod:`pytest_minicontainer.store._store` for the layout and the concurrency rules.  The
names below are what the other packages (images, build, the engine) use; its modules are its
own.
"""

from __future__ import annotations

from ._fs import disk_full, tree_size
from ._names import NAME_RE, is_digest, normalise_tag
from ._store import Store
from ._treehash import file_digest, tree_digest
from ._trees import Owner, TreeAccess

__all__ = ["NAME_RE", "Owner", "Store", "TreeAccess", "disk_full", "file_digest", "is_digest", "normalise_tag",
           "tree_digest", "tree_size"]
