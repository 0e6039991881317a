"""A build cache kept in a registry, so that another machine's build skips the steps one ran.

BuildKit's registry cache is the model (``--cache-to type=registry,ref=...,mode=max``): the
cache is an ordinary OCI artifact any registry stores, a manifest whose config maps step
keys to results and whose layers are the layer blobs those results added.  Here a step key is
the local cache's own (``_cache.step_key``: parent image digest, the step as planned, the
digest of what COPY takes), so it means the same on every machine; an entry says which
parent digest it applies to, the result's digest and config, and the layers the step added.

``cache_from``: the manifests are read once per build (a few KiB); a step the local cache
lacks and an entry has is taken from it, its layer blob pulled and verified against its diff
id like any pull, and recorded in the local cache: a RUN step taken from the cache is not run.
``cache_to``: after a build every step it passed through (run or cached, in every stage) is
exported; entries already at the reference are kept (several Containerfiles, and the shards
of one CI run, can share one reference), the newest ``MAX_ENTRIES`` of them.

A cache that cannot be read is a warning, not a failure (the build runs its steps, as with
BuildKit); a cache that cannot be written fails the build with an error naming the reference,
since a CI that believes it shares a cache should learn that it does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ImageError, MiniContainerError
from ..image import Image, ImageConfig
from ..images import LayerPlan, chain_id, import_layer
from ..images.registry import (
    LayerPublisher,
    RegistryClient,
    RegistryOptions,
    RegistryRef,
    RegistrySource,
    canonical_json,
    connect,
    manifest,
    parse_registry_ref,
)
from ..store import Store
from . import _cache

__all__ = ["CACHE_CONFIG", "CacheExport", "RemoteCache"]

CACHE_CONFIG = "application/vnd.minicontainer.buildcache.config.v1+json"
MAX_ENTRIES = 2000


@dataclass(frozen=True)
class _Entry:
    parent: str
    result: str
    config: dict[str, Any]
    layers: tuple[dict[str, Any], ...]  # descriptors with "diff_id": what the step added
    time: float


def _entries(doc: Any) -> dict[str, _Entry]:
    """The steps of a cache config; anything malformed is left out (a cache is only a hint)."""
    out: dict[str, _Entry] = {}
    steps = doc.get("steps") if isinstance(doc, dict) and doc.get("version") == _cache.CACHE_VERSION else None
    if not isinstance(steps, dict):
        return out
    for key, e in steps.items():
        try:
            layers = tuple(dict(d) for d in e.get("layers", ()))
            if not all(isinstance(d.get(k), str) for d in layers for k in ("digest", "diff_id")):
                continue
            out[str(key)] = _Entry(str(e["parent"]), str(e["result"]), dict(e.get("config") or {}), layers,
                                   float(e.get("time", 0)))
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return out


def _read(client: RegistryClient, ref: RegistryRef, store: Store) -> tuple[dict[str, _Entry], RegistrySource]:
    src = RegistrySource(client, ref, store)
    top = src.top()
    with src.open("blobs/sha256/" + str(top["digest"]).removeprefix("sha256:")) as f:
        doc = json.loads(f.read())
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict) or config.get("mediaType") != CACHE_CONFIG:
        raise ImageError(f"{ref} is not a build cache of pytest-minicontainer (its config is"
                         f" {config.get('mediaType') if isinstance(config, dict) else None!r})")
    with src.open("blobs/sha256/" + str(config.get("digest", "")).removeprefix("sha256:")) as f:
        return _entries(json.loads(f.read())), src


class RemoteCache:
    """The entries of the ``cache_from`` references, and how to take a step from them."""

    def __init__(self, store: Store, refs: Sequence[str], say: Callable[[str], None],
                 options: RegistryOptions | None = None, max_layer_size: int | None = None) -> None:
        self.store = store
        self.max_layer_size = max_layer_size  # what one layer taken from a cache may unpack to (None: env)
        self.say = say
        self._entries: dict[str, tuple[_Entry, RegistrySource, str]] = {}
        for text in refs:
            try:
                ref = parse_registry_ref(text)
                client = RegistryClient(ref.endpoint, ref.repository, options or RegistryOptions.from_env(),
                                        credentials_for=ref.registry)
                client.ping()
                entries, src = _read(client, ref, store)
            except (MiniContainerError, ValueError) as exc:
                say(f"cache-from {text}: not used ({exc})")
                continue
            origin = f"{ref.registry}/{ref.repository}"
            for key, entry in entries.items():
                self._entries.setdefault(key, (entry, src, origin))
            say(f"cache-from {text}: {len(entries)} step(s)")

    def lookup(self, key: str, parent: Image) -> Image | None:
        """The result of step ``key`` on ``parent`` from the registry, now in the store; or None."""
        found = self._entries.get(key)
        if found is None or found[0].parent != parent.digest or parent.host_dirs:
            return None
        entry, src, origin = found
        if entry.result == parent.digest:
            return parent
        if self.store.has_image(entry.result):  # imported before, or built here alike
            with contextlib.suppress(MiniContainerError):  # an unreadable record: imported again below
                image = self.store.complete_image(entry.result)
                if image is not None:
                    return replace(image, reference="")
        try:
            config = ImageConfig.from_oci(entry.config, what="build cache entry")
            image = parent
            with self.store.in_use():
                for i, layer in enumerate(entry.layers):
                    image = self._add_layer(image, layer, src, origin, config,
                                            entry.result if i == len(entry.layers) - 1 else None)
                if not entry.layers:
                    image = replace(parent, digest=entry.result, config=config, tags=(), reference="")
                self.store.save_image(image)
        except MiniContainerError as exc:
            self.say(f"  cache-from: step not taken ({exc})")
            return None
        return image

    def _add_layer(self, parent: Image, layer: dict[str, Any], src: RegistrySource, origin: str,
                   config: ImageConfig, digest: str | None) -> Image:
        diff_id, blob = str(layer["diff_id"]), str(layer["digest"])
        chain = None
        for lid in (*parent.layers, diff_id):
            chain = chain_id(chain, lid)
        size = layer.get("size")
        plan = LayerPlan(diff_id=diff_id, open=lambda: src.open("blobs/sha256/" + blob.removeprefix("sha256:")),
                         name=f"{src.name}:{blob}", blob_digest=blob, media_type=str(layer.get("mediaType", "")),
                         size=size if isinstance(size, int) else None)
        layer_dir = import_layer(self.store, plan, chain, lowers=parent.layer_dirs, max_layer_size=self.max_layer_size)
        if plan.size is not None:
            self.store.record_layer_export(layer_dir, {"diff_id": diff_id, "digest": blob, "size": plan.size,
                                                       "media_type": plan.media_type, "repositories": [origin]})
        own = digest or "sha256:" + hashlib.sha256(f"{parent.digest} {diff_id}".encode()).hexdigest()
        return parent.derive(digest=own, layer=diff_id, layer_dir=layer_dir, config=config)


class CacheExport:
    """Every step a build passed through, pushed as one cache artifact to ``ref``."""

    def __init__(self, store: Store, ref: str) -> None:
        self.store = store
        self.ref = ref
        self._steps: dict[str, tuple[Image, Image]] = {}

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, key: str, parent: Image, result: Image) -> None:
        if not parent.host_dirs:  # the host image's files are this machine's: nothing to share
            self._steps[key] = (parent, result)

    def push(self, options: RegistryOptions | None = None) -> str:
        """Upload the layers and the cache manifest; its digest."""
        ref = parse_registry_ref(self.ref)
        if ref.digest:
            raise ImageError(f"cache-to {self.ref}: name a tag, not a digest")
        up = connect(ref, options)
        publisher = LayerPublisher(self.store, up, ref)
        try:
            kept, _ = _read(up.client, ref, self.store)
        except MiniContainerError:
            kept = {}  # no cache there yet (or not ours): this build's steps start it
        now = time.time()
        steps: dict[str, dict[str, Any]] = {}
        layers: dict[str, dict[str, Any]] = {}
        for key, entry in kept.items():
            if all(publisher.up.has_blob(d["digest"]) for d in entry.layers):
                steps[key] = _as_json(entry)
                layers.update((d["digest"], _descriptor(d)) for d in entry.layers)
        for key, (parent, result) in self._steps.items():
            added = _added(parent, result)
            if added is None:
                continue
            described = []
            for layer_dir in added:
                descriptor, diff_id = publisher.descriptor(layer_dir)
                described.append({**descriptor, "diff_id": diff_id})
                layers[descriptor["digest"]] = descriptor
            steps[key] = {"parent": parent.digest, "result": result.digest, "config": result.config.to_oci(),
                          "layers": described, "time": now}
        newest = sorted(steps.items(), key=lambda kv: -float(kv[1].get("time", 0)))[:MAX_ENTRIES]
        config = canonical_json({"version": _cache.CACHE_VERSION, "steps": dict(newest)})
        used = {d["digest"] for _, e in newest for d in e["layers"]}
        config_digest = up.push_bytes(config)
        return up.put_manifest(ref.tag or "latest",
                               manifest(config, config_digest, _ordered(layers, used), CACHE_CONFIG),
                               "application/vnd.oci.image.manifest.v1+json")


def _added(parent: Image, result: Image) -> list[str] | None:
    """The layer directories ``result`` has on top of ``parent``, or None when it is not built on it."""
    n = len(parent.layer_dirs)
    if tuple(result.layer_dirs[:n]) != tuple(parent.layer_dirs):
        return None
    return list(result.layer_dirs[n:])


def _descriptor(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("mediaType", "digest", "size") if k in d}


def _as_json(entry: _Entry) -> dict[str, Any]:
    return {"parent": entry.parent, "result": entry.result, "config": entry.config, "layers": list(entry.layers),
            "time": entry.time}


def _ordered(layers: dict[str, dict[str, Any]], used: Iterable[str]) -> list[dict[str, Any]]:
    keep = set(used)
    return [layers[d] for d in sorted(layers) if d in keep]
