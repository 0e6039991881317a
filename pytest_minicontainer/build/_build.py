"""``build()``: read the Containerfile, plan every stage, then execute with the cache.

Planning first means that a syntax error, a bad substitution, an unknown ``FROM`` or a COPY
source that is missing, ignored or outside the context fails before any container starts.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import BuildError, MiniContainerError
from ..image import Image
from ..paths import CACHE_FROM_ENV, CACHE_TO_ENV
from ._executor import Executor
from ._ignore import load_ignore
from ._layers import scratch_image
from ._parser import SUPPORTED, parse
from ._plan import context_root, make_plan
from ._remote import CacheExport, RemoteCache

if TYPE_CHECKING:
    from ..engine import Engine
    from ..images.registry import RegistryOptions

__all__ = ["build", "read_containerfile"]

NETWORKS = ("default", "slirp", "host", "none")


def default_network(say: Callable[[str], None]) -> str:
    """The network of RUN steps when none was asked for: ``slirp`` where the host allows it.

    Docker's builds get a network namespace of their own with outbound access; running them
    on the host's network let a RUN step reach services on the host's 127.0.0.1 and its
    abstract unix sockets (where the peer looked like root).  slirp4netns gives the outbound
    access without a route to the host's loopback; without it a build gets no network, and
    one line says how to get it (or that ``network="host"`` is still there to ask for).
    """
    missing = []
    if shutil.which("slirp4netns") is None:
        missing.append("apt-get install slirp4netns")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        missing.append("chmod 0666 /dev/net/tun")
    if not missing:
        return "slirp"
    say(f"minicontainer build: RUN steps get no network (outbound access needs slirp4netns and a usable "
        f"/dev/net/tun); fix: {' and '.join(missing)}, or pass network=\"host\" to use the host's network")
    return "none"


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
          build_args: Mapping[str, str] | None = None, target: str | None = None, network: str = "default",
          no_cache: bool = False, progress: Callable[[str], None] | None = None,
          secrets: Mapping[str, str | os.PathLike[str]] | None = None, cache_to: str | None = None,
          cache_from: str | Sequence[str] | None = None,
          ssh: Mapping[str, str | os.PathLike[str]] | None = None,
          registry_options: RegistryOptions | None = None, max_layer_size: int | None = None) -> Image:
    """Build an image (see ``Engine.build``); ``progress`` receives one line per step.

    ``registry_options`` are those of the registry caches (``cache_from``, ``cache_to``);
    default: the environment's (``RegistryOptions.from_env``).  ``max_layer_size`` bounds what
    a layer taken from a cache, or an archive ``ADD`` extracts, may unpack to (default: the
    environment's).  ``FROM`` images come from ``engine.image``, with the engine's settings.
    """
    if cache_from is None:
        cache_from = os.environ.get(CACHE_FROM_ENV, "").replace(",", " ").split()
    elif isinstance(cache_from, str):
        cache_from = [cache_from]
    if cache_to is None:
        cache_to = os.environ.get(CACHE_TO_ENV) or None
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, not {network!r}")
    if network == "default":
        network = default_network(progress or (lambda line: print(line, file=sys.stderr, flush=True)))
    root = context_root(context)
    instructions, escape = parse(read_containerfile(containerfile, root))
    ignore = load_ignore(root)

    def resolve(ref: str) -> Image:
        return scratch_image() if ref == "scratch" else engine.image(ref, progress=progress)

    start = time.monotonic()

    stages = make_plan(instructions, escape, build_args=dict(build_args or {}), target=target, resolve=resolve,
                       context=root, ignore=ignore)
    say = progress or (lambda line: print(f"minicontainer build: {line}", file=sys.stderr, flush=True))
    remote = (RemoteCache(engine.store, list(cache_from), say, options=registry_options,
                          max_layer_size=max_layer_size)
              if cache_from and not no_cache else None)
    export = CacheExport(engine.store, cache_to) if cache_to else None
    executor = Executor(engine, ignore=ignore, network=network, no_cache=no_cache, progress=progress,
                        context=root, secrets={k: os.fspath(v) for k, v in (secrets or {}).items()},
                        remote=remote, export=export, ssh={k: os.fspath(v) for k, v in (ssh or {}).items()},
                        max_layer_size=max_layer_size)
    image = executor.run(stages)
    engine.store.save_image(image)
    if export is not None:
        try:
            with engine.store.in_use():
                digest = export.push(registry_options)
        except MiniContainerError as exc:
            raise BuildError(f"the build finished ({image.digest}) but its cache could not be written to"
                             f" {cache_to}: {exc}") from exc
        say(f"cache-to {cache_to}: {len(export)} step(s), {digest}")
    if engine.announce is not None:
        steps = sum(1 + len(s.steps) for s in stages)
        engine.announce(f"built {tag or image.short_id}: {steps} steps, {executor.steps_run} ran (the rest"
                        f" cached or settings) in {time.monotonic() - start:.1f}s")
    if tag:
        engine.store.tag(tag, image.digest)
        image = replace(engine.store.load_image(image.digest), reference=tag,
                        host_dirs=image.host_dirs)
    return image
