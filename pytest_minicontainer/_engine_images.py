"""The Engine's image verbs: resolve (pull), remove, list, tag, push, prune and build.

A part of :class:`~pytest_minicontainer.engine.Engine` of its own (the Engine inherits it):
these verbs work on the store and the registries and start a container only to build.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ImageError, ImageNotFound, RegistryError
from .image import Image
from .progress import BlobLines, Lines, human_size, lines_for
from .runtime.client import Runtime
from .store import Store, tree_size

if TYPE_CHECKING:
    from .images.registry import RegistryOptions

__all__ = ["ImageResolver", "ImageVerbs"]

ImageResolver = Callable[[str], "Image | str | None"]


class ImageVerbs:
    """Images for an Engine (see the methods); what they share is declared here."""

    store: Store
    image_resolver: ImageResolver | None
    announce: Callable[[str], None] | None
    pull: str | None
    registry: RegistryOptions | None  # None: the environment's
    max_layer_size: int | None  # None: the environment's
    _image_cache: dict[str, Image]
    _pulled: dict[tuple[str, str | None], Image]
    _unreachable: dict[tuple[str, str | None], RegistryError]

    @property
    def runtime(self) -> Runtime:
        raise NotImplementedError  # the Engine's

    # -- images ---------------------------------------------------------------------------------
    def image(self, ref: str | Image, *, pull: str | None = None, platform: str | None = None,
              progress: Lines | bool | None = None) -> Image:
        """Resolve ``ref`` ("host", "rootfs:...", "oci:...", "NAME:TAG", a registry name) to an image.

        ``pull`` (missing, always, never) says when a registry is asked; ``platform``
        ("linux/arm64") picks from a multi-platform image (default: this host's).
        ``progress``: a callable gets a few lines per layer a pull downloads (True: on stderr).
        """
        if isinstance(ref, Image):
            return ref
        if pull is None:
            pull = self.pull
        if not isinstance(ref, str) or not ref.strip():
            raise ImageError(f"an image reference must be a non-empty string, not {ref!r}")
        ref = ref.strip()
        if self.image_resolver is not None:
            found = self.image_resolver(ref)
            if isinstance(found, Image):
                return found
            if isinstance(found, str) and found != ref:
                return self.image(found, pull=pull, platform=platform, progress=progress)
        # The host and rootfs directories are named by path, not content: resolving them again
        # in one session gives the same image, so the per-test cost is a dict lookup.
        # Keyed by absolute path: a relative ``rootfs:`` means another directory after a chdir.
        cacheable = ref == "host" or (ref.startswith("rootfs:") and os.path.isdir(ref[len("rootfs:"):]))
        key = ref if ref == "host" else "rootfs:" + os.path.abspath(ref[len("rootfs:"):])
        if cacheable and key in self._image_cache:
            return self._image_cache[key]
        if ref == "host":
            from .images.host import host_image

            image = host_image(self.store)
        else:
            from .images import parse_reference, resolve

            if parse_reference(ref).transport in ("store", "docker"):
                image = self._named(ref, pull or "missing", platform, lines_for(progress))
            else:
                image = resolve(self.store, ref, pull=pull, platform=platform, max_layer_size=self.max_layer_size)
        if cacheable:
            self._image_cache[key] = image
        return image

    def _named(self, ref: str, pull: str, platform: str | None, lines: Lines | None) -> Image:
        """A name a registry may serve: its registry asked at most once per engine for ``always``,
        and not again after it did not answer at all.

        Otherwise a suite of hundreds of tests would wait for a dead registry (or count against
        its pull rate limit) once per test; one check per session is what ``always`` means here.
        A pull that downloaded anything is announced (see ``announce``).
        """
        from .images import resolve

        key = (ref, platform)
        if pull == "always" and key in self._pulled:
            return self._pulled[key]
        down = self._unreachable.get(key)
        if down is not None:
            if pull != "always":
                with contextlib.suppress(ImageNotFound):  # another process may have pulled it since
                    return resolve(self.store, ref, pull="never", platform=platform)
            raise RegistryError(f"{down}\n  (this session asked once already; it is not asked again)",
                                down.registry, unreachable=True)
        counter = BlobLines(lines, prefix=f"{ref} ")
        start = time.monotonic()
        try:
            image = resolve(self.store, ref, pull=pull, platform=platform, progress=counter,
                            registry_options=self.registry, max_layer_size=self.max_layer_size)
        except RegistryError as exc:
            if exc.unreachable:
                self._unreachable[key] = exc
            raise
        if counter.blobs and self.announce is not None:
            self.announce(f"pulled {ref}: {counter.blobs} blob(s), {human_size(counter.bytes)} in "
                          f"{time.monotonic() - start:.1f}s")
        if pull == "always":
            self._pulled[key] = image
        return image

    def remove(self, image: Image | str) -> None:
        """Remove ``image`` (an Image, a tag or a digest) from the store, with every tag of it.

        Its layers go at the next :meth:`prune` unless another image uses them.
        """
        ref = image.digest if isinstance(image, Image) else image
        self.store.remove_image(ref)

    def images(self) -> list[Image]:
        """Every image of the store (``minicontainer images``), each with its tags."""
        return self.store.list_images()

    def tag(self, image: Image | str, name: str) -> Image:
        """Give ``image`` (an Image, a tag or a digest) the name ``name`` (``NAME[:TAG]``); the
        image with its tags.  A name that pointed at another image moves, as in Docker."""
        digest = image.digest if isinstance(image, Image) else self.store.resolve_digest(image)
        self.store.tag(name, digest)
        return self.store.load_image(name)

    def push(self, image: Image | str, ref: str, *, progress: Lines | bool | None = None) -> str:
        """Push ``image`` (an Image, a tag or a digest of the store) to the registry name ``ref``
        (``host[:port]/name:tag``); the pushed manifest's digest, which a pull of ``ref`` gets.

        Blobs the repository has are not sent again, those another repository of the same
        registry holds are mounted; credentials and the plain-HTTP rule are the pulls' own.
        ``progress``: a callable gets a few lines per layer it uploads (True: on stderr).
        """
        from .images.registry import push_image

        img = image if isinstance(image, Image) else self.store.load_image(image)
        lines = lines_for(progress)
        counter = BlobLines(lines, prefix=f"{ref} ", verb="uploading")
        start = time.monotonic()
        with self.store.in_use():  # its layers stay while they are read
            result = push_image(self.store, img, ref, progress=counter, options=self.registry)
        line = (f"pushed {result.reference}: {result.uploaded} of {result.layers} layer(s) sent"
                f" ({human_size(result.bytes_sent)}) in {time.monotonic() - start:.1f}s, {result.digest}")
        for emit in (self.announce, lines):
            if emit is not None:
                emit(line)
        return result.digest

    def prune(self, *, all: bool = False) -> int:
        """Reclaim what nothing refers to; the bytes freed.

        Layers and blobs no image uses, work left by killed processes, containers' scratch
        space of sessions that died, and images that sessions committed without a tag once
        those sessions ended.  ``all=True`` removes every image and tag first: only what
        running sessions use stays, and the store's owner can delete what is left.
        """

        def clean_runs(run_dir: Path) -> int:
            before = tree_size(run_dir)
            self.runtime.clean_stale()
            return max(0, before - tree_size(run_dir))

        return self.store.gc(run_cleaner=clean_runs, everything=all)
