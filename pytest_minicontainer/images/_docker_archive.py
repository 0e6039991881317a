"""``docker save`` archives to an :class:`ImagePlan`.

``manifest.json`` is read first and is authoritative (it exists in both formats): it names
the config, the tags and the layer files.  Legacy archives (``<id>/layer.tar``) carry no
manifest digest, so the image digest is the config digest, i.e. Docker's image id.  Newer
archives (Docker 25+) also embed an OCI layout; when one of its manifests points at the same
config, that manifest's digest is used, as the brief wants, and its layer digests are
verified too.  Layers are always verified against the config's diff ids.

Every field is read through the shape checks of :mod:`._oci`, so an archive with valid JSON of
the wrong shape (``"RepoTags": "foo:1"``) is an :class:`ImageError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import ImageError, ImageNotFound
from ..store import normalise_tag
from ._oci import (
    check_config,
    get_object,
    get_objects,
    get_string,
    get_strings,
    index_manifests,
    layout_index,
    parse_json,
)
from ._plan import ImagePlan, LayerPlan
from ._source import Source, read_blob, read_small

__all__ = ["docker_archive_plan"]


def _valid_tags(tags: list[str]) -> set[str]:
    """``tags`` in the store's normal form, without the invalid ones.

    ``docker save`` never writes an invalid tag, so one (``"Bad Tag!"``) is a hand-edited or
    foreign archive: it can neither match a valid ``:REPO:TAG`` nor be stored (the import drops
    it too), so it is ignored rather than making the whole archive unloadable.
    """
    out = set()
    for t in tags:
        try:
            out.add(normalise_tag(t))
        except ValueError:
            continue
    return out


def _select(src: Source, entries: list[dict[str, Any]], tags: list[list[str]], want: str | None) -> int:
    """The index of the entry ``want`` names (or of the only entry)."""
    if want:
        norm = normalise_tag(want)  # valid: checked by docker_archive_plan before reading the archive
        for i, entry_tags in enumerate(tags):
            if norm in _valid_tags(entry_tags):
                return i
        have = ", ".join(t for entry_tags in tags for t in entry_tags) or "no tags"
        raise ImageNotFound(want, f"{src.name}: no image tagged {want!r} in the docker archive"
                                  f" (it has: {have})")
    if len(entries) == 1:
        return 0
    have = ", ".join(t for entry_tags in tags for t in entry_tags)
    raise ImageError(f"the docker archive holds {len(entries)} images; name one with :REPO:TAG"
                     f" (it has: {have or 'untagged images only'})", path=src.name)


def _oci_manifest_for(src: Source, config_digest: str) -> tuple[str, bytes, list[str]] | None:
    """The embedded OCI manifest whose config is ``config_digest``, if the archive has one."""
    if not src.exists("index.json") or not src.exists("oci-layout"):
        return None
    stack = index_manifests(layout_index(src), "index.json", src.name)
    seen = 0
    while stack and seen < 64:
        seen += 1
        desc = stack.pop()
        digest = str(desc.get("digest", ""))
        try:
            data = read_blob(src, digest, "manifest")
        except ImageError:
            continue
        what = f"manifest {digest}"
        doc = parse_json(data, what, src.name)
        if "manifests" in doc:
            stack.extend(index_manifests(doc, what, src.name))
        elif get_object(doc, "config", what, src.name).get("digest") == config_digest:
            return digest, data, [str(lay.get("digest", "")) for lay in get_objects(doc, "layers", what, src.name)]
    return None


def docker_archive_plan(src: Source, want: str | None) -> ImagePlan:
    if want:  # the user's :REPO:TAG, checked before the archive is read: a typo is not a corrupt file
        try:
            normalise_tag(want)
        except ValueError:
            reference = f"docker-archive:{src.name}:{want}"
            raise ImageError(f"image reference {reference!r}: {want!r} is not a valid REPO:TAG (write"
                             " docker-archive:FILE[:REPO:TAG] with a lower-case NAME[:TAG],"
                             " e.g. docker-archive:app.tar:app:1)") from None
    if not src.exists("manifest.json"):
        raise ImageError("not a docker-archive (manifest.json is missing)", path=src.name)
    try:
        entries = json.loads(read_small(src, "manifest.json", "manifest.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"manifest.json is not valid JSON: {exc}", path=src.name) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageError("manifest.json is not a list of images", path=src.name)
    tags = [get_strings(e, "RepoTags", f"manifest.json[{i}]", src.name) for i, e in enumerate(entries)]
    chosen = _select(src, entries, tags, want)
    entry, what = entries[chosen], f"manifest.json[{chosen}]"
    config_rel = get_string(entry, "Config", what, src.name)
    if not src.exists(config_rel):
        raise ImageError(f"manifest.json names config {config_rel!r}, which is missing", path=src.name)
    config_bytes = read_small(src, config_rel, "config")
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    config_what = f"config {config_rel}"
    config = parse_json(config_bytes, config_what, src.name)
    check_config(config, config_what, src.name)
    layer_rels = get_strings(entry, "Layers", what, src.name)
    rootfs = get_object(config, "rootfs", config_what, src.name)
    diff_ids = get_strings(rootfs, "diff_ids", config_what, src.name, "rootfs.diff_ids")
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
    return ImagePlan(digest=digest, config=config, layers=tuple(layers), blobs=blobs, tags=tuple(tags[chosen]))


def _opener(src: Source, rel: str) -> Any:
    return lambda: src.open(rel)


