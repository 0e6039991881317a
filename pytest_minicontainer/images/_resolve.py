"""``resolve(store, reference)``: any accepted reference to an :class:`Image` in the store.

Names (``alpine``, ``localhost:5000/app:1``, ``docker://...``) are looked up in the store and,
as the pull policy allows, pulled from their registry (:mod:`.registry`).  Files and layouts
are imported as described below.

A second resolve of the same file must cost milliseconds, so each import remembers the
source file's identity (path, size, mtime, inode) -> image digest; the fast path is a stat,
two small reads and a few ``isdir`` calls.  The slow path holds a lock named after that
identity, so concurrent workers importing the same file do it once.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ImageError, ImageNotFound, RegistryError
from ..image import Image
from ..store import Store, is_digest
from ._docker_archive import docker_archive_plan
from ._import import materialise
from ._oci import layout_plan
from ._plan import ImagePlan
from ._reference import ACCEPTED_FORMS, Reference, parse_reference
from ._rootfs import rootfs_dir_image, rootfs_tar_image
from ._source import DirSource, TarSource, open_source

if TYPE_CHECKING:
    from .registry import Progress, RegistryOptions

__all__ = ["resolve"]


def resolve(store: Store, reference: str, *, pull: str | None = None, platform: str | None = None,
            progress: Progress | None = None, registry_options: RegistryOptions | None = None,
            max_layer_size: int | None = None) -> Image:
    """The image ``reference`` names, imported into ``store`` if needed.

    ``pull`` (``missing`` by default, ``always``, ``never``) and ``platform`` (``linux/arm64``;
    default: this host's) apply to names that a registry can serve; ``progress`` gets the
    byte counts of what a pull downloads.  ``registry_options`` (mirror, insecure registries,
    timeout) default to the environment's (``RegistryOptions.from_env``), and so does
    ``max_layer_size``, what one layer of a pull or an import may unpack to (bytes).
    """
    ref = parse_reference(reference)
    if ref.transport in ("store", "docker"):
        return _named(store, ref, reference, pull or "missing", platform, progress, registry_options,
                      max_layer_size)
    if ref.transport == "rootfs" and os.path.isdir(ref.path):
        return rootfs_dir_image(store, ref.path, reference)
    ident = _identity_file(ref)
    if ref.transport == "oci" and os.path.isdir(ref.path) and not os.path.isfile(ident):
        raise ImageError("not an OCI image layout (index.json is missing)", path=ref.path)
    if not os.path.exists(ident):
        raise ImageNotFound(reference, f"{reference}: {ref.path} does not exist")
    key = store.source_key(ident, f"{ref.transport}:{ref.ref or ''}")
    cached = _cached(store, key, reference)
    if cached is not None:
        return cached
    with store.lock("source", key):
        cached = _cached(store, key, reference)
        if cached is not None:
            return cached
        store.clean_stale_tmp()
        image = _import(store, ref, max_layer_size)
        store.record_source(key, image.digest)
        return image


def _named(store: Store, ref: Reference, reference: str, pull: str, platform: str | None,
           progress: Progress | None, registry_options: RegistryOptions | None,
           max_layer_size: int | None) -> Image:
    """A name: the store's image (tags, digests, id prefixes) unless the policy says pull."""
    from .registry import PULL_POLICIES, parse_registry_ref, pull_image, stored_image

    if pull not in PULL_POLICIES:
        raise ImageError(f"pull policy {pull!r} is not one of {', '.join(PULL_POLICIES)}")
    # With an explicit platform the tag may name another platform's image: pull_image knows
    # which image each platform's pull gave, so only a digest is looked up here.
    looked = ref.transport == "store" and (is_digest(ref.path) or (pull != "always" and not platform))
    if looked:
        try:
            image = store.load_image(ref.path)
            if store.image_complete(image):
                return image
        except ImageNotFound as exc:
            if pull == "never" and not is_digest(ref.path):
                # NAME@<index digest>: the store holds the manifest a pull chose from that
                # index, under its own digest; the pull recorded which one.
                try:
                    found = stored_image(store, parse_registry_ref(ref.path), reference)
                except ImageError:  # not a registry name at all: the error below says what it is
                    found = None
                if found is not None:
                    return found
            if pull == "never" or is_digest(ref.path):
                why = ("a bare digest names an image in the store (pull NAME@DIGEST instead)"
                       if is_digest(ref.path) else "the pull policy is 'never', so registry pulls are off")
                raise ImageNotFound(reference, f"{exc}; {why}; {ACCEPTED_FORMS}") from None
    try:
        return pull_image(store, ref.path, policy=pull, platform=platform, progress=progress,
                          options=registry_options, max_layer_size=max_layer_size)
    except ImageError as exc:
        if ref.transport != "store":
            raise
        # A bare name may have been meant as something else (a typo'd transport, a local
        # file): say that the store was searched too, and what else could have been written.
        note = (f"{reference!r} is not in the store {store.root}, and pulling it failed: " if looked else "")
        note += f"{exc}; {ACCEPTED_FORMS}"
        if isinstance(exc, RegistryError):
            raise RegistryError(note, exc.registry, unreachable=exc.unreachable) from exc
        if isinstance(exc, ImageNotFound):
            raise ImageNotFound(reference, note) from exc
        raise ImageError(note) from exc


def _identity_file(ref: Reference) -> str:
    if ref.transport == "oci" and os.path.isdir(ref.path):
        return os.path.join(ref.path, "index.json")
    return ref.path


def _cached(store: Store, key: str, reference: str) -> Image | None:
    digest = store.lookup_source(key)
    if digest is None:
        return None
    image = store.complete_image(digest)
    return None if image is None else replace(image, reference=reference)


def _import(store: Store, ref: Reference, max_layer_size: int | None) -> Image:
    if ref.transport == "rootfs":
        return rootfs_tar_image(store, ref.path, ref.text, max_layer_size=max_layer_size)
    if ref.transport == "oci" and not os.path.isdir(ref.path):
        raise ImageError(f"{ref.text}: {ref.path} is not a directory (use oci-archive: for a tar file)")
    src = DirSource(ref.path) if ref.transport == "oci" else open_source(ref.path)
    if ref.transport != "oci" and not isinstance(src, TarSource):
        raise ImageError(f"{ref.text}: {ref.path} is a directory, expected an archive file")
    try:
        plan: ImagePlan = (docker_archive_plan(src, ref.ref) if ref.transport == "docker-archive"
                           else layout_plan(src, ref.ref))
        return materialise(store, plan, ref.text, max_layer_size=max_layer_size)
    finally:
        src.close()
