"""``docker save`` archives to an :class:`ImagePlan`.

``manifest.json`` is read first and is authoritative (it exists in both formats): it names
the config, the tags and the layer files.  Legacy archives (``<id>/layer.tar``) carry no
manifest digest, so the image digest is the config digest, i.e. Docker's image id.  Newer
archives (Docker 25+) also embed an OCI layout; when one of its manifests points at the same
config, that manifest's digest is used, as the brief wants, and its layer digests are
verified too.  Layers are always verified against the config's diff ids.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import ImageError, ImageNotFound
from ..store import normalise_tag
from ._oci import layout_index, parse_json
from ._plan import ImagePlan, LayerPlan
from ._source import Source, read_blob, read_small

__all__ = ["docker_archive_plan"]


def _select(src: Source, entries: list[dict[str, Any]], want: str | None) -> dict[str, Any]:
    if want:
        norm = normalise_tag(want)
        for e in entries:
            if norm in {normalise_tag(t) for t in e.get("RepoTags") or ()}:
                return e
        have = ", ".join(t for e in entries for t in e.get("RepoTags") or ()) or "no tags"
        raise ImageNotFound(want, f"{src.name}: no image tagged {want!r} in the docker archive"
                                  f" (it has: {have})")
    if len(entries) == 1:
        return entries[0]
    have = ", ".join(t for e in entries for t in e.get("RepoTags") or ())
    raise ImageError(f"the docker archive holds {len(entries)} images; name one with :REPO:TAG"
                     f" (it has: {have or 'untagged images only'})", path=src.name)


def _oci_manifest_for(src: Source, config_digest: str) -> tuple[str, bytes, list[str]] | None:
    """The embedded OCI manifest whose config is ``config_digest``, if the archive has one."""
    if not src.exists("index.json") or not src.exists("oci-layout"):
        return None
    stack = list(layout_index(src).get("manifests") or ())
    seen = 0
    while stack and seen < 64:
        seen += 1
        desc = stack.pop()
        digest = str(desc.get("digest", ""))
        try:
            data = read_blob(src, digest, "manifest")
        except ImageError:
            continue
        doc = parse_json(data, f"manifest {digest}", src.name)
        if "manifests" in doc:
            stack.extend(doc.get("manifests") or ())
        elif (doc.get("config") or {}).get("digest") == config_digest:
            return digest, data, [str(lay.get("digest", "")) for lay in doc.get("layers") or ()]
    return None


def docker_archive_plan(src: Source, want: str | None) -> ImagePlan:
    if not src.exists("manifest.json"):
        raise ImageError("not a docker-archive (manifest.json is missing)", path=src.name)
    try:
        entries = json.loads(read_small(src, "manifest.json", "manifest.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"manifest.json is not valid JSON: {exc}", path=src.name) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageError("manifest.json is not a list of images", path=src.name)
    entry = _select(src, entries, want)
    config_rel = str(entry.get("Config", ""))
    if not src.exists(config_rel):
        raise ImageError(f"manifest.json names config {config_rel!r}, which is missing", path=src.name)
    config_bytes = read_small(src, config_rel, "config")
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    config = parse_json(config_bytes, f"config {config_rel}", src.name)
    layer_rels = [str(x) for x in entry.get("Layers") or ()]
    diff_ids = [str(x) for x in (config.get("rootfs") or {}).get("diff_ids") or ()]
    if len(diff_ids) != len(layer_rels):
        raise ImageError(f"manifest.json lists {len(layer_rels)} layers but config {config_rel} has"
                         f" {len(diff_ids)} diff_ids", path=src.name)
    oci = _oci_manifest_for(src, config_digest)
    blob_digests: list[str | None] = [None] * len(layer_rels)
    blobs: dict[str, bytes] = {config_digest: config_bytes}
    digest = config_digest
    if oci is not None and len(oci[2]) == len(layer_rels):
        digest, manifest_bytes, layer_digests = oci
        blobs[digest] = manifest_bytes
        blob_digests = list(layer_digests)
    layers = []
    for rel, diff_id, blob in zip(layer_rels, diff_ids, blob_digests, strict=True):
        if not src.exists(rel):
            raise ImageError(f"manifest.json names layer {rel!r}, which is missing", path=src.name)
        layers.append(LayerPlan(diff_id=diff_id, open=_opener(src, rel), name=f"{src.name}:{rel}",
                                blob_digest=blob))
    tags = tuple(str(t) for t in entry.get("RepoTags") or ())
    return ImagePlan(digest=digest, config=config, layers=tuple(layers), blobs=blobs, tags=tags)


def _opener(src: Source, rel: str) -> Any:
    return lambda: src.open(rel)


