"""The few functions of the library that run inside the runtime's user namespace, by name.

Rootless with a subordinate id range, what a layer or a container wrote may belong to ids only
that namespace maps: setting owners, hashing, walking or removing such trees, and writing a
layer back as a tar for a push, must run there (in a child of the zygote, see
``runtime.zygote._call``).  The request names the function; the zygote runs it only if it is
listed here, so no request can make it import or call anything else of the package.  A module
of its own (not the runtime's) because the functions belong to the store, the images package
and the container: the runtime knows them by name only.
"""

from __future__ import annotations

__all__ = ["ALLOWED", "check"]

ALLOWED = frozenset({
    ("pytest_minicontainer.store._fs", "apply_owners"),
    ("pytest_minicontainer.store._fs", "remove_tree"),
    ("pytest_minicontainer.store._treehash", "tree_digest"),
    ("pytest_minicontainer._diff", "changes"),
    ("pytest_minicontainer.images._export", "export_layer"),
})


def check(module: str, function: str) -> None:
    """Raise ValueError unless ``module.function`` is one of :data:`ALLOWED`."""
    if (module, function) not in ALLOWED:
        raise ValueError(f"{module}.{function} is not a function the user namespace runs "
                         "(see pytest_minicontainer._namespace_calls.ALLOWED)")
