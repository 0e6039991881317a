"""OCI image layouts (``oci:`` directories, ``oci-archive:`` tars) to an :class:`ImagePlan`.

``index.json`` may name images by ``org.opencontainers.image.ref.name``; an entry may itself
be an index (multi-platform), from which the manifest for this host is picked, skipping
BuildKit's attestation manifests.  Every manifest and config is verified against its digest;
layer blobs are verified while they are unpacked.

These files come from anywhere a user points us, so every field read is checked for its JSON
shape first (the ``get_*`` helpers): a wrong shape ends as an :class:`ImageError` naming the
file and the field, never as an AttributeError or TypeError from deep inside a plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .._shapes import show, wrong_shape
from ..errors import ImageError, ImageNotFound
from ..image import ImageConfig
from . import _mediatypes as mt
from ._plan import ImagePlan, LayerPlan
from ._platform import check_descriptor, is_attestation, parse_platform, platform_score, platform_str
from ._source import Source, blob_path, read_blob, read_small

__all__ = ["REF_ANNOTATION", "check_config", "get_object", "get_objects", "get_string", "get_strings",
           "index_manifests", "layout_plan", "manifest_plan", "parse_json"]

REF_ANNOTATION = "org.opencontainers.image.ref.name"


def parse_json(data: bytes, what: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}", path=where) from None
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a JSON object", path=where)
    return value


def _get(doc: Mapping[str, Any], key: str, what: str, where: str, label: str, kind: str,
         ok: Callable[[Any], bool]) -> Any:
    """``doc[key]`` if absent, null or passing ``ok``; else an ImageError "WHAT: LABEL must be KIND, got ..."."""
    value = doc.get(key)
    if value is not None and not ok(value):
        raise wrong_shape(what, where, label or key, kind, value)
    return value


def get_object(doc: Mapping[str, Any], key: str, what: str, where: str, label: str = "") -> dict[str, Any]:
    """``doc[key]`` as a JSON object ({} when absent); ``what`` names the document, ``where`` its file."""
    value: dict[str, Any] | None = _get(doc, key, what, where, label, "a JSON object",
                                        lambda v: isinstance(v, dict))
    return value or {}


def get_objects(doc: Mapping[str, Any], key: str, what: str, where: str, label: str = "") -> list[dict[str, Any]]:
    """``doc[key]`` as a JSON array of objects ([] when absent)."""
    value: list[dict[str, Any]] | None = _get(doc, key, what, where, label, "a JSON array of objects",
                                              lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v))
    return value or []


def get_strings(doc: Mapping[str, Any], key: str, what: str, where: str, label: str = "") -> list[str]:
    """``doc[key]`` as a JSON array of strings ([] when absent)."""
    value: list[str] | None = _get(doc, key, what, where, label, "a JSON array of strings",
                                   lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
    return value or []


def get_string(doc: Mapping[str, Any], key: str, what: str, where: str, label: str = "") -> str:
    """``doc[key]`` as a string ("" when absent)."""
    value: str | None = _get(doc, key, what, where, label, "a string", lambda v: isinstance(v, str))
    return value or ""


def check_config(config: Mapping[str, Any], what: str, where: str) -> None:
    """Fail on a malformed runtime ``config`` now, naming the blob, before any layer is unpacked.

    The import reads it again (:meth:`ImageConfig.from_oci`) only after unpacking every layer,
    and without the file's name to report.
    """
    ImageConfig.from_oci(get_object(config, "config", what, where), what=what, where=where)


def _kind(doc: Mapping[str, Any], media_type: str, what: str, where: str) -> str:
    mtype = get_string(doc, "mediaType", what, where) or media_type
    if mtype in mt.INDEX_TYPES or (not mtype and "manifests" in doc):
        return "index"
    if mtype in mt.MANIFEST_TYPES or (not mtype and "layers" in doc):
        return "manifest"
    if doc.get("schemaVersion") == 1:
        return "schema1"
    return "unknown"


def _pick_platform(src: Source, index: Mapping[str, Any], where: str, platform: str | None = None) -> dict[str, Any]:
    entries = index_manifests(index, where, src.name)
    for m in entries:
        check_descriptor(m, f"{where} entry {show(m.get('digest'))}", src.name)
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
    what = f"manifest {digest}"
    doc = parse_json(data, what, src.name)
    kind = _kind(doc, str(desc.get("mediaType", "")), what, src.name)
    if kind == "index":
        return manifest_plan(src, _pick_platform(src, doc, f"index {digest}", platform), where, depth + 1, platform)
    if kind == "schema1":
        raise ImageError(f"manifest {digest} is Docker schema 1, which is not supported"
                         " (convert it: skopeo copy --format oci ...)", path=src.name)
    if kind != "manifest":
        raise ImageError(f"manifest {digest} has unsupported media type {doc.get('mediaType')!r}",
                         path=src.name)
    cdesc = get_object(doc, "config", what, src.name)
    config_digest = get_string(cdesc, "digest", what, src.name, "config.digest")
    config_bytes = read_blob(src, config_digest, f"config of manifest {digest}")
    config_what = f"config {config_digest}"
    config = parse_json(config_bytes, config_what, src.name)
    check_config(config, config_what, src.name)
    layers = _layers(src, doc, config, digest, config_what)
    return ImagePlan(digest=digest, config=config, layers=layers,
                     blobs={digest: data, config_digest: config_bytes})


def _layers(src: Source, manifest: Mapping[str, Any], config: Mapping[str, Any],
            digest: str, config_what: str) -> tuple[LayerPlan, ...]:
    descs = get_objects(manifest, "layers", f"manifest {digest}", src.name)
    rootfs = get_object(config, "rootfs", config_what, src.name)
    diff_ids = get_strings(rootfs, "diff_ids", config_what, src.name, "rootfs.diff_ids")
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
        size = d.get("size")
        out.append(LayerPlan(diff_id=diff_id, open=_opener(src, rel), name=f"{src.name}:{rel}",
                             blob_digest=blob, media_type=mtype,
                             size=size if isinstance(size, int) and not isinstance(size, bool) else None))
    return tuple(out)


def _opener(src: Source, rel: str) -> Any:
    return lambda: src.open(rel)


def index_manifests(index: Mapping[str, Any], what: str, where: str) -> list[dict[str, Any]]:
    """The descriptors of an index's ``manifests`` array (which must be one).

    Entries that are not objects are skipped, as they always were: they name nothing usable,
    and the other entries may still hold the image asked for.
    """
    value: list[Any] | None = _get(index, "manifests", what, where, "", "a JSON array", lambda v: isinstance(v, list))
    return [m for m in value or () if isinstance(m, dict)]


def layout_index(src: Source) -> dict[str, Any]:
    if not src.exists("index.json"):
        raise ImageError("not an OCI image layout (index.json is missing)", path=src.name)
    return parse_json(read_small(src, "index.json", "index"), "index.json", src.name)


def layout_plan(src: Source, ref: str | None) -> ImagePlan:
    """The image ``ref`` names in the layout (or its only image when ``ref`` is None)."""
    index = layout_index(src)
    entries = index_manifests(index, "index.json", src.name)
    names = [str(get_object(m, "annotations", f"index.json entry {show(m.get('digest'))}", src.name)
                 .get(REF_ANNOTATION, "")) for m in entries]
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
