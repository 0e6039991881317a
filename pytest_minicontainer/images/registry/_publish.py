"""``push_image``: any image of the store into a repository of a registry.

A pulled image whose blobs the target repository has, or can mount from the repository it came
from, is pushed as it was: its own manifest and config, so the digest stays the one it had.
Anything else (built, committed, imported, or a pulled image going to another registry) gets
a new OCI manifest: each layer directory is written as a tar+gzip blob (``.._export``; in the
runtime's user namespace when the layer holds ids only it maps) once, and the blob's digest
is remembered by the store (``Store.layer_export``), so the next push of the same layer asks
``HEAD`` and sends nothing.  The bytes of a written layer depend on its content alone, so a
second writing gives the same digest even after the record is gone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ImageError, StoreError
from ...image import Image
from ...store import Store
from .. import _mediatypes as mt
from .._platform import host_platform
from ._client import RegistryClient
from ._options import RegistryOptions
from ._push import CHUNK_SIZE, Uploader
from ._reference import RegistryRef, parse_registry_ref
from ._source import Progress

__all__ = ["LayerPublisher", "PushResult", "canonical_json", "connect", "manifest", "push_image"]

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def canonical_json(doc: Any) -> bytes:
    """One byte string per document: the same image pushed twice has one digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PushResult:
    """What a push did: the manifest's digest, and how many layer blobs it had to send."""

    digest: str
    reference: str
    layers: int
    uploaded: int
    bytes_sent: int


def connect(ref: RegistryRef, options: RegistryOptions | None, progress: Progress | None = None,
            chunk_size: int = CHUNK_SIZE) -> Uploader:
    """An :class:`Uploader` for ``ref``'s repository, logged in for pushing."""
    client = RegistryClient(ref.endpoint, ref.repository, options or RegistryOptions.from_env(),
                            credentials_for=ref.registry)
    uploader = Uploader(client, progress, chunk_size)  # asks for push rights from the first challenge on
    client.ping()
    return uploader


class LayerPublisher:
    """Layer directories of the store to blobs of one repository: ``descriptor(dir)``."""

    def __init__(self, store: Store, uploader: Uploader, ref: RegistryRef) -> None:
        self.store = store
        self.up = uploader
        self.registry = ref.registry
        self.here = f"{ref.registry}/{ref.repository}"

    def _sources(self, record: dict[str, Any]) -> list[str]:
        prefix = self.registry + "/"
        return [r[len(prefix):] for r in record.get("repositories", ()) if str(r).startswith(prefix)]

    def available(self, digest: str, record: dict[str, Any] | None = None) -> bool:
        """The repository has ``digest`` or a mount from a repository known to hold it gave it."""
        if self.up.has_blob(digest):
            return True
        return record is not None and self.up.mount(digest, self._sources(record))

    def descriptor(self, layer_dir: str) -> tuple[dict[str, Any], str]:
        """The OCI descriptor of the layer in ``layer_dir`` once the repository holds it, and its diff id."""
        record = self.store.layer_export(layer_dir)
        if record is None or not self.available(record["digest"], record):
            record = self._write_and_send(layer_dir, record)
        self.store.record_layer_export(layer_dir, {**record, "repositories": [self.here]})
        return ({"mediaType": record.get("media_type") or mt.LAYER_GZIP, "digest": record["digest"],
                 "size": int(record["size"])}, str(record["diff_id"]))

    def _write_and_send(self, layer_dir: str, old: dict[str, Any] | None) -> dict[str, Any]:
        if not Path(layer_dir).is_dir():
            raise StoreError(f"layer directory {layer_dir} is missing from the store (pruned while in use?);"
                             " pull or build the image again")
        tmp = self.store.new_tmp_dir("push-")
        try:
            blob = tmp / "layer.tar.gz"
            record: dict[str, Any] = self.store.trees.call("images._export", "export_layer", layer_dir, str(blob))
            known_missing = old is not None and old["digest"] == record["digest"]  # asked just before
            if known_missing or not self.available(record["digest"]):
                self.up.upload(record["digest"], int(record["size"]), str(blob))
            return record
        finally:
            self.store.discard_tmp(tmp)


def _original(store: Store, image: Image) -> tuple[bytes, dict[str, Any]] | None:
    """The manifest an image was pulled or imported with, if the store keeps it."""
    try:
        data = store.get_blob(image.digest)
        doc = json.loads(data)
    except (ImageError, OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("mediaType", mt.OCI_MANIFEST) not in mt.MANIFEST_TYPES \
            or not isinstance(doc.get("layers"), list) or not isinstance(doc.get("config"), dict):
        return None
    return data, doc


def _as_pulled(store: Store, image: Image, publisher: LayerPublisher, reference: str,
               found: tuple[bytes, dict[str, Any]] | None) -> str | None:
    """Push the image's own manifest (``found``) when the repository has (or can mount) every blob of it."""
    if found is None:
        return None
    data, doc = found
    if len(doc["layers"]) != len(image.layer_dirs):
        return None
    for layer, layer_dir in zip(doc["layers"], image.layer_dirs, strict=True):
        record = store.layer_export(layer_dir)
        if record is None or record["digest"] != layer.get("digest"):
            return None
        if not publisher.available(record["digest"], record):
            return None
        store.record_layer_export(layer_dir, {**record, "repositories": [publisher.here]})
    config = doc["config"]
    try:
        config_bytes = store.get_blob(str(config.get("digest")))
    except (ImageError, ValueError, StoreError):
        return None
    publisher.up.push_bytes(config_bytes)
    media_type = str(doc.get("mediaType") or mt.OCI_MANIFEST)
    return publisher.up.put_manifest(reference, data, media_type)


def image_config(store: Store, image: Image, diff_ids: Sequence[str],
                 found: tuple[bytes, dict[str, Any]] | None) -> dict[str, Any]:
    """An OCI image configuration for ``image`` with these layers (its platform: the one of the
    manifest it was pulled with, ``found``, else this host's)."""
    os_, arch, variant = host_platform()
    if found is not None:
        with_platform = found[1]["config"]
        try:
            old = json.loads(store.get_blob(str(with_platform.get("digest"))))
            os_, arch = str(old.get("os", os_)), str(old.get("architecture", arch))
            variant = str(old.get("variant", ""))
        except (ImageError, ValueError, StoreError, AttributeError):
            pass
    config: dict[str, Any] = {"architecture": arch, "os": os_, "config": image.config.to_oci(),
                              "rootfs": {"type": "layers", "diff_ids": list(diff_ids)}}
    if variant:
        config["variant"] = variant
    return config


def manifest(config_bytes: bytes, config_digest: str, layers: Sequence[dict[str, Any]],
             config_type: str = OCI_CONFIG) -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": config_type, "digest": config_digest, "size": len(config_bytes)},
                           "layers": list(layers)})


def push_image(store: Store, image: Image, text: str, *, options: RegistryOptions | None = None,
               progress: Progress | None = None, chunk_size: int = CHUNK_SIZE) -> PushResult:
    """Push ``image`` to the registry reference ``text`` (``host/name:tag``)."""
    ref = parse_registry_ref(text)
    if ref.digest:
        raise ImageError(f"cannot push to {text}: name a tag, not a digest (the registry computes the digest)")
    if image.host_dirs:
        raise ImageError(f"cannot push {image}: it is built on the `host` image, whose files are this machine's"
                         " own directories; build it FROM a real base image to push it")
    reference = ref.tag or "latest"
    up = connect(ref, options, progress, chunk_size)
    publisher = LayerPublisher(store, up, ref)
    original = _original(store, image)
    digest = _as_pulled(store, image, publisher, reference, original)
    if digest is None:
        layers, diff_ids = [], []
        for layer_dir in image.layer_dirs:
            descriptor, diff_id = publisher.descriptor(layer_dir)
            layers.append(descriptor)
            diff_ids.append(diff_id)
        config_bytes = canonical_json(image_config(store, image, diff_ids, original))
        config_digest = up.push_bytes(config_bytes)
        digest = up.put_manifest(reference, manifest(config_bytes, config_digest, layers), mt.OCI_MANIFEST)
    return PushResult(digest=digest, reference=f"{ref.registry}/{ref.repository}:{reference}",
                      layers=len(image.layer_dirs), uploaded=up.uploads, bytes_sent=up.sent)
