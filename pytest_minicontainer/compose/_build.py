"""``build:``: the parameters of ``engine.build`` for a service (the Compose Build Specification).

``build: ./dir`` and the long form with ``context``, ``dockerfile`` (relative to the context),
``dockerfile_inline``, ``args`` (list or map; a name without a value takes it from the
interpolation environment, and is left out when that has none so the Dockerfile's ``ARG``
default applies), ``target``, ``network`` and ``no_cache``.  Keys about caches, tags,
labels and attestations have no effect on what is built here; secrets, SSH agents and extra
contexts cannot be given to this builder, so they are refused rather than dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._interpolate import Lookup
from ._model import Build
from ._values import Doc, show
from ._yaml import KeyPath

__all__ = ["read_build"]

_SUPPORTED = ("context", "dockerfile", "dockerfile_inline", "args", "target", "network", "no_cache")
_NO_EFFECT = ("cache_from", "cache_to", "labels", "tags", "pull", "provenance", "sbom")
_WARNED = {"shm_size": "the build's /dev/shm size is not set", "ulimits": "the build's limits are not set",
           "platforms": "images are built for this machine's platform only"}
_REFUSED = {
    "ssh": "the builder cannot forward an SSH agent",
    "secrets": "the builder cannot mount build secrets",
    "additional_contexts": "the builder takes one context",
    "entitlements": "the builder grants no extra entitlements",
    "privileged": "build steps cannot run privileged",
    "extra_hosts": "build steps cannot get extra /etc/hosts entries",
    "isolation": "Windows builds only",
}
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/)")


def read_build(doc: Doc, path: KeyPath, value: Any, directory: Path, lookup: Lookup) -> Build:
    """The service's build parameters, paths made absolute and checked."""
    if isinstance(value, str):
        value = {"context": value}
    spec = doc.mapping(path, value, "a context path or a mapping")
    doc.keys(path, spec, (*_SUPPORTED, *_NO_EFFECT, *_WARNED, *_REFUSED))
    for key, why in _REFUSED.items():
        if key in spec and (key != "privileged" or doc.boolean((*path, key), spec[key])):
            doc.fail((*path, key), f"not supported: {why}")
    for key, why in _WARNED.items():
        if key in spec:
            doc.warn((*path, key), f"ignored: {why}")
    context_text = doc.string((*path, "context"), spec.get("context", "."))
    if _REMOTE.match(context_text):
        doc.fail((*path, "context"), f"remote build context {context_text!r} is not fetched here: clone it and give "
                                     "its path")
    context = Path(context_text).expanduser()
    context = (context if context.is_absolute() else directory / context).resolve()
    if not context.is_dir():
        doc.fail((*path, "context"), f"build context {context} is not a directory")
    dockerfile = None
    inline = doc.optional_string((*path, "dockerfile_inline"), spec.get("dockerfile_inline"))
    if spec.get("dockerfile") is not None:
        if inline is not None:
            doc.fail(path, "dockerfile and dockerfile_inline exclude each other: give one")
        dockerfile = Path(doc.string((*path, "dockerfile"), spec["dockerfile"])).expanduser()
        dockerfile = dockerfile if dockerfile.is_absolute() else context / dockerfile
        if not dockerfile.is_file():
            doc.fail((*path, "dockerfile"), f"Dockerfile {dockerfile} does not exist (a relative path starts at "
                                            "the build context)")
    elif inline is None and not any((context / n).is_file() for n in ("Dockerfile", "Containerfile")):
        doc.fail(path, f"no Dockerfile (or Containerfile) in the build context {context}: add one or give dockerfile:")
    args = {}
    for key, arg in doc.list_or_dict((*path, "args"), spec.get("args"), "build arguments").items():
        resolved = arg if arg is not None else lookup(key)
        if resolved is not None:
            args[key] = resolved
    network = doc.string((*path, "network"), spec.get("network", "default"))
    if network not in ("default", "host", "none"):
        doc.fail((*path, "network"), f"build network {network!r} is not supported (default, host, none): build "
                                     "steps run with the host's network or none")
    no_cache = doc.boolean((*path, "no_cache"), spec["no_cache"]) if "no_cache" in spec else False
    target = doc.optional_string((*path, "target"), spec.get("target"))
    if target == "":
        doc.fail((*path, "target"), f"must name a build stage, not {show(target)}")
    return Build(context, dockerfile, inline, args, target, "none" if network == "none" else "host", no_cache)
