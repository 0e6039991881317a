"""The content-addressed store of image blobs and unpacked layers (no namespaces, no OCI).

See :mod:`pytest_minicontainer.store._store` for the layout and the concurrency rules.
"""

from __future__ import annotations

from ._fs import tree_size
from ._names import normalise_tag
from ._store import Store
from ._treehash import file_digest, tree_digest
from ._trees import Owner, TreeAccess

__all__ = ["Owner", "Store", "TreeAccess", "file_digest", "normalise_tag", "tree_digest", "tree_size"]
