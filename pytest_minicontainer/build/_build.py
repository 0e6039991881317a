"""``build()``: read the Containerfile, plan every stage, then execute with the cache.

Planning first means that a syntax error, a bad substitution, an unknown ``FROM`` or a COPY
source that is missing, ignored or outside the context fails before any container starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import BuildError
from ..image import Image
from ._executor import Executor
from ._ignore import load_ignore
from ._layers import scratch_image
from ._parser import SUPPORTED, parse
from ._plan import context_root, make_plan

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["build", "read_containerfile"]

NETWORKS = ("host", "none")


def read_containerfile(containerfile: str | os.PathLike[str] | None, context: str) -> str:
    """The file's text: ``containerfile`` is a path, the text itself (it has a newline), or
    None for ``Containerfile`` then ``Dockerfile`` in the context."""
    if containerfile is None:
        for name in ("Containerfile", "Dockerfile"):
            path = os.path.join(context, name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    return f.read()
        raise BuildError(f"no Containerfile or Dockerfile in the build context {context} (pass containerfile=)")
    if isinstance(containerfile, str) and "\n" in containerfile:
        return containerfile
    path = os.fspath(containerfile)
    for candidate in (path, os.path.join(context, path)):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                return f.read()
    first = containerfile.split(None, 1)[:1] if isinstance(containerfile, str) else []
    if first and first[0].upper() in SUPPORTED:
        return str(containerfile)  # a one-line file given as text ("FROM host", "FROM\thost")
    raise BuildError(f"Containerfile {path} does not exist (relative paths are tried from the current "
                     f"directory, then from the context {context})")


def build(engine: Engine, containerfile: str | os.PathLike[str] | None = None,
          context: str | os.PathLike[str] = ".", *, tag: str | None = None,
          build_args: Mapping[str, str] | None = None, target: str | None = None, network: str = "host",
          no_cache: bool = False, progress: Callable[[str], None] | None = None) -> Image:
    """Build an image (see ``Engine.build``); ``progress`` receives one line per step."""
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, not {network!r}")
    root = context_root(context)
    instructions, escape = parse(read_containerfile(containerfile, root))
    ignore = load_ignore(root)

    def resolve(ref: str) -> Image:
        return scratch_image() if ref == "scratch" else engine.image(ref)

    stages = make_plan(instructions, escape, build_args=dict(build_args or {}), target=target, resolve=resolve,
                       context=root, ignore=ignore)
    executor = Executor(engine, ignore=ignore, network=network, no_cache=no_cache, progress=progress)
    image = executor.run(stages)
    engine.store.save_image(image)
    if tag:
        engine.store.tag(tag, image.digest)
        image = replace(engine.store.load_image(image.digest), reference=tag,
                        host_dirs=image.host_dirs)
    return image
