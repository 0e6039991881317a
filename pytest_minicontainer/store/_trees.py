"""How the store reaches into the trees it keeps: by default directly, as this process.

Most trees in the store belong to the user running it.  Rootless with a subordinate id
range, though, layers keep the owners their image gives them (uid 1000 inside is, say, uid
100999 on the host) and containers write files as those ids: then this process may not be
able to set those owners, read those files or delete those directories, and the work has to
be done where the ids are mapped, in the runtime's user namespace.  The store does not know
about namespaces: the engine hands it a :class:`TreeAccess` that does (see
``_namespace_trees.NamespaceTrees``); this default one works for root and for a single mapping.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._fs import remove_tree
from ._treehash import tree_digest

__all__ = ["Owner", "TreeAccess"]

Owner = tuple[str, int, int]  # a path relative to the tree, uid, gid


class TreeAccess:
    """Set owners in, hash and remove trees of the store."""

    def apply_owners(self, root: Path, owners: Sequence[Owner]) -> None:
        """Give ``owners`` (that the unpacker could not give) to entries below ``root``.

        Here, unprivileged: nothing to do, the files stay the user's (root inside a container).
        """
        if os.geteuid() == 0 and owners:
            from ._fs import apply_owners

            apply_owners(os.fspath(root), [list(o) for o in owners])

    def digest(self, root: Path) -> str:
        """The tree's content digest (see ``tree_digest``)."""
        return tree_digest(root)

    def remove(self, path: Path) -> None:
        """Delete a tree."""
        remove_tree(path)

    def call(self, module: str, function: str, *args: Any) -> Any:
        """``pytest_minicontainer.<module>.<function>(*args)`` where the trees' owners are
        what their images say (JSON arguments and result).

        Here: in this process.  For work that reads whole trees (a layer written back as a
        tar for a push) where this process may lack the permission or see subordinate ids.
        """
        from .._namespace_calls import check

        check(f"pytest_minicontainer.{module}", function)  # the same functions as in the namespace
        return getattr(importlib.import_module(f"pytest_minicontainer.{module}"), function)(*args)
