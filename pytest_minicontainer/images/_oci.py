"""OCI image layouts (``oci:`` directories, ``oci-archive:`` tars) to an :class:`ImagePlan`.

``index.json`` may name images by ``org.opencontainers.image.ref.name``; an entry may itself
be an index (multi-platform), from which the manifest for this host is picked, skipping
BuildKit's attestation manifests.  Every manifest and config is verified against its digest;
layer blobs are verified while they are unpacked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import ImageError, ImageNotFound
from . import _mediatypes as mt
from ._plan import ImagePlan, LayerPlan
from ._platform import is_attestation, parse_platform, platform_score, platform_str
from ._source import Source, blob_path, read_blob, read_small

__all__ = ["REF_ANNOTATION", "layout_plan", "manifest_plan", "parse_json"]

REF_ANNOTATION = "org.opencontainers.image.ref.name"


def parse_json(data: bytes, what: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}", path=where) from None
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a JSON object", path=where)
    return value


def _kind(doc: Mapping[str, Any], media_type: str) -> str:
    mtype = doc.get("mediaType") or media_type
    if mtype in mt.INDEX_TYPES or (not mtype and "manifests" in doc):
        return "index"
    if mtype in mt.MANIFEST_TYPES or (not mtype and "layers" in doc):
        return "manifest"
    if doc.get("schemaVersion") == 1:
        return "schema1"
    return "unknown"


def _pick_platform(src: Source, index: Mapping[str, Any], where: str, platform: str | None = None) -> dict[str, Any]:
    entries = [m for m in index.get("manifests") or () if isinstance(m, dict)]
    wanted = parse_platform(platform) if platform else None
    scored = sorted(((platform_score(m, wanted), i, m) for i, m in enumerate(entries)), key=lambda t: (-t[0], t[1]))
    if not scored or scored[0][0] == 0:
        have = ", ".join(sorted({platform_str(m) for m in entries if not is_attestation(m)})) or "none"
        which = f"platform {platform}" if platform else "this host's platform"
        raise ImageError(f"no manifest for {which} in {where} (available: {have})", path=src.name)
    return scored[0][2]


def manifest_plan(src: Source, desc: Mapping[str, Any], where: str, depth: int = 0,
                  platform: str | None = None) -> ImagePlan:
    """Follow ``desc`` (a manifest or an index) to one image manifest for ``platform`` (default: this host)."""
    if depth > 4:
        raise ImageError("indexes nested too deeply", path=src.name)
    digest = str(desc.get("digest", ""))
    data = read_blob(src, digest, "manifest")
    doc = parse_json(data, f"manifest {digest}", src.name)
    kind = _kind(doc, str(desc.get("mediaType", "")))
    if kind == "index":
        return manifest_plan(src, _pick_platform(src, doc, f"index {digest}", platform), where, depth + 1, platform)
    if kind == "schema1":
        raise ImageError(f"manifest {digest} is Docker schema 1, which is not supported"
                         " (convert it: skopeo copy --format oci ...)", path=src.name)
    if kind != "manifest":
        raise ImageError(f"manifest {digest} has unsupported media type {doc.get('mediaType')!r}",
                         path=src.name)
    cdesc = doc.get("config") or {}
    config_digest = str(cdesc.get("digest", ""))
    config_bytes = read_blob(src, config_digest, f"config of manifest {digest}")
    config = parse_json(config_bytes, f"config {config_digest}", src.name)
    layers = _layers(src, doc, config, digest)
    return ImagePlan(digest=digest, config=config, layers=layers,
                     blobs={digest: data, config_digest: config_bytes})


def _layers(src: Source, manifest: Mapping[str, Any], config: Mapping[str, Any],
            digest: str) -> tuple[LayerPlan, ...]:
    descs = [d for d in manifest.get("layers") or () if isinstance(d, dict)]
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or ())
    if len(diff_ids) != len(descs):
        raise ImageError(f"manifest {digest} lists {len(descs)} layers but its config has"
                         f" {len(diff_ids)} diff_ids", path=src.name)
    out = []
    for d, diff_id in zip(descs, diff_ids, strict=True):
        mtype = str(d.get("mediaType", ""))
        if mtype and mtype not in mt.LAYER_TYPES:
            raise ImageError(f"layer {d.get('digest')} has unsupported media type {mtype!r}", path=src.name)
        blob = str(d.get("digest", ""))
        rel = blob_path(src, blob, f"manifest {digest}")
        out.append(LayerPlan(diff_id=str(diff_id), open=_opener(src, rel), name=f"{src.name}:{rel}",
                             blob_digest=blob, media_type=mtype))
    return tuple(out)


def _opener(src: Source, rel: str) -> Any:
    return lambda: src.open(rel)


def layout_index(src: Source) -> dict[str, Any]:
    if not src.exists("index.json"):
        raise ImageError("not an OCI image layout (index.json is missing)", path=src.name)
    return parse_json(read_small(src, "index.json", "index"), "index.json", src.name)


def layout_plan(src: Source, ref: str | None) -> ImagePlan:
    """The image ``ref`` names in the layout (or its only image when ``ref`` is None)."""
    index = layout_index(src)
    entries = [m for m in index.get("manifests") or () if isinstance(m, dict)]
    names = [str((m.get("annotations") or {}).get(REF_ANNOTATION, "")) for m in entries]
    if ref:
        chosen = [m for m, n in zip(entries, names, strict=True) if n == ref]
        if not chosen:
            have = ", ".join(repr(n) for n in names if n) or "no named images"
            raise ImageNotFound(ref, f"{src.name}: no image named {ref!r} in the OCI layout"
                                     f" (index.json has: {have})")
        if len(chosen) > 1:
            return manifest_plan(src, _pick_platform(src, {"manifests": chosen}, "index.json"), ref)
        return manifest_plan(src, chosen[0], ref)
    if not entries:
        raise ImageNotFound(src.name, f"{src.name}: the OCI layout contains no images")
    if len(entries) == 1:
        return manifest_plan(src, entries[0], "index.json")
    if all(m.get("platform") for m in entries):
        return manifest_plan(src, _pick_platform(src, index, "index.json"), "index.json")
    have = ", ".join(repr(n) for n in names if n)
    raise ImageError(f"the OCI layout holds {len(entries)} images; name one with :REF"
                     f" (index.json has: {have or 'unnamed images only'})", path=src.name)
