"""``pull_image``: the pull policy, the pull lock and the Docker Hub mirror around one pull.

A pull is a plan like any other source's: the registry answers the layout reader's blob
requests (:class:`RegistrySource`) and :func:`.._import.materialise` unpacks what the store
lacks, so layers shared with stored images are never downloaded.  The whole pull holds a file
lock named after the reference: a second process pulling the same image waits, then finds it
in the store (policy ``missing``) or finds every layer present (policy ``always``), so the
image is downloaded once.
"""

from __future__ import annotations

from dataclasses import replace

from ...errors import ImageError, ImageNotFound
from ...image import Image
from ...store import Store
from .._import import materialise
from .._oci import manifest_plan
from .._platform import host_platform, parse_platform
from ._client import RegistryClient
from ._options import RegistryOptions
from ._reference import DOCKER_HUB, RegistryRef, parse_registry_ref
from ._source import Progress, RegistrySource

__all__ = ["PULL_POLICIES", "pull_image", "stored_image"]

PULL_POLICIES = ("missing", "always", "never")


def _platform_key(ref: RegistryRef, platform: str) -> str:
    os_, arch, variant = parse_platform(platform)
    if arch == "arm64" and variant == "v8":
        variant = ""  # the only arm64 variant in use; both spellings name one image
    return f"registry\0{ref}\0{os_}/{arch}/{variant}"


def _host_platform() -> str:
    return "/".join(part for part in host_platform() if part)


def stored_image(store: Store, ref: RegistryRef, reference: str, platform: str | None = None) -> Image | None:
    """The complete image the store holds for ``ref``, or None.

    A tag names the image last pulled for it, whatever its platform; with an explicit
    ``platform`` the store's record of what that platform's pull gave is used instead, so
    ``platform="linux/arm64"`` never returns the host's image of the same tag.  A digest names
    the image itself, unless it is an index's: the store keeps the manifest chosen from the
    index, never the index, so the record of what this host's pull chose is used.
    """
    if platform:
        keys = [store.lookup_source(_platform_key(ref, platform))]
    elif ref.digest:
        keys = [ref.digest, store.lookup_source(_platform_key(ref, _host_platform()))]
    else:
        keys = [ref.store_tag]
    for key in keys:
        if key is None:
            continue
        image = store.complete_image(key)
        if image is not None:
            return replace(image, reference=reference)
    return None


def pull_image(store: Store, text: str, *, policy: str = "missing", platform: str | None = None,
               options: RegistryOptions | None = None, progress: Progress | None = None,
               max_layer_size: int | None = None) -> Image:
    """The image ``text`` names, taken from the store or the registry as ``policy`` says.

    ``options`` and ``max_layer_size`` (what one layer may unpack to) default to the environment's.
    """
    if policy not in PULL_POLICIES:
        raise ImageError(f"pull policy {policy!r} is not one of {', '.join(PULL_POLICIES)}")
    ref = parse_registry_ref(text)
    if policy != "always":
        found = stored_image(store, ref, text, platform)
        if found is not None:
            return found
        if policy == "never":
            raise ImageNotFound(text, f"{text} ({ref}) is not in the store {store.root} and the pull policy is"
                                      f" 'never' (pull it with `minicontainer pull {text}` or use pull='missing')")
    options = options or RegistryOptions.from_env()
    with store.lock("pull", f"{ref}\0{platform or ''}"):
        if policy == "missing":
            found = stored_image(store, ref, text, platform)
            if found is not None:
                return found
        store.clean_stale_tmp()
        image, mirror_error = None, None
        if ref.registry == DOCKER_HUB and options.mirror:
            try:
                image = _pull(store, ref, text, options.mirror, options, platform, progress, max_layer_size)
            except ImageError as exc:  # Docker's rule: a failing mirror falls back to the hub
                mirror_error = exc
        if image is None:
            try:
                image = _pull(store, ref, text, ref.endpoint, options, platform, progress, max_layer_size)
            except ImageError as exc:
                if mirror_error is not None:
                    exc.args = (f"{exc} (the mirror {options.mirror} failed first: {mirror_error})",)
                raise
        if platform or ref.digest:
            # What this platform's pull gave: the image of a tag moves, and an index digest names
            # no stored image at all (stored_image); without a platform the host's was chosen.
            store.record_source(_platform_key(ref, platform or _host_platform()), image.digest)
        return image


def _pull(store: Store, ref: RegistryRef, text: str, endpoint: str, options: RegistryOptions,
          platform: str | None, progress: Progress | None, max_layer_size: int | None) -> Image:
    creds_for = ref.registry if endpoint == ref.endpoint else endpoint
    client = RegistryClient(endpoint, ref.repository, options, credentials_for=creds_for)
    client.ping()
    src = RegistrySource(client, ref, store, progress)
    plan = manifest_plan(src, src.top(), str(ref), platform=platform)
    tags = (ref.store_tag,) if ref.store_tag else ()
    return materialise(store, replace(plan, tags=tags, origin=f"{ref.registry}/{ref.repository}"), text,
                       max_layer_size=max_layer_size)
