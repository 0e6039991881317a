"""``volumes:`` (short and long syntax), ``tmpfs:``, and ``configs:``/``secrets:`` grants.

- A bind mount's source is a host path, relative ones from the compose file's directory
  (``~`` is the home directory).  It must exist: docker compose creates a missing one, but
  this library writes nothing outside its store, so the error says to create it.
- A named volume is a directory per stack, shared by the services that mount it; an
  anonymous one (``- /data``) a directory for one container.  ``subpath`` and ``nocopy`` are
  kept for the code that makes them.
- tmpfs mounts (``type: tmpfs``, the ``tmpfs:`` key) are an empty directory per container;
  their ``size`` is not enforced.
- Mount propagation other than private, and the ``image``, ``npipe`` and ``cluster`` types,
  are refused; SELinux labels (``z``, ``Z``) and macOS consistency modes mean nothing here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._model import FileMount, VolumeMount
from ._values import Doc, show
from ._yaml import KeyPath

__all__ = ["FileSource", "read_files", "read_tmpfs", "read_volumes"]

_PRIVATE = ("private", "rprivate")
_IGNORED_MODES = ("z", "Z", "cached", "delegated", "consistent")
_LONG_KEYS = ("type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs", "image")


@dataclass(frozen=True)
class FileSource:
    """A top-level ``configs:``/``secrets:`` entry: a host file, or the content itself."""

    file: Path | None = None
    content: str | None = None


def _is_path(source: str) -> bool:
    """Whether a short-syntax source is a host path (the spec: it starts with ``.``, ``/`` or ``~``)."""
    return source.startswith((".", "/", "~"))


def _bind_source(doc: Doc, path: KeyPath, source: str, directory: Path) -> str:
    host = Path(os.path.expanduser(source))
    host = host if host.is_absolute() else directory / host
    host = Path(os.path.normpath(host))
    if not host.exists():
        doc.fail(path, f"bind mount source {host} does not exist: create it (docker compose would; this library "
                       "writes nothing outside its store), or use a named volume (a fresh directory per stack)")
    return str(host)


def _target(doc: Doc, path: KeyPath, target: str) -> str:
    if not target.startswith("/"):
        doc.fail(path, f"the container path {target!r} must be absolute")
    if os.path.normpath(target) == "/":
        doc.fail(path, "the container's root cannot be a mount target")
    return target


def _volume_key(doc: Doc, path: KeyPath, source: str, volumes: Mapping[str, object]) -> str:
    if source not in volumes:
        doc.fail(path, f"volume {source!r} is not declared in the top-level volumes: (a host path must start with "
                       "./, ../, / or ~)")
    return source


def _short(doc: Doc, path: KeyPath, text: str, directory: Path, volumes: Mapping[str, object]) -> VolumeMount:
    parts = text.split(":")
    if len(parts) == 1:
        return VolumeMount("volume", _target(doc, path, parts[0]))
    if len(parts) > 3 or not parts[0] or not parts[1]:
        doc.fail(path, f"{text!r} is not SOURCE:TARGET[:MODE] or TARGET")
    source, target = parts[0], _target(doc, path, parts[1])
    options = parts[2].split(",") if len(parts) == 3 else []
    bind = _is_path(source)
    read_only = nocopy = False
    for option in options:
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option == "nocopy" and not bind:
            nocopy = True
        elif option in _IGNORED_MODES or option in _PRIVATE:
            continue
        elif option in ("shared", "rshared", "slave", "rslave"):
            doc.fail(path, f"mount propagation {option!r} is not supported here (mounts are private)")
        else:
            doc.fail(path, f"unknown mount option {option!r} in {text!r} (ro, rw, z, Z{'' if bind else ', nocopy'})")
    if bind:
        return VolumeMount("bind", target, _bind_source(doc, path, source, directory), read_only)
    return VolumeMount("volume", target, _volume_key(doc, path, source, volumes), read_only, nocopy)


def _long(doc: Doc, path: KeyPath, entry: dict[str, Any], directory: Path,
          volumes: Mapping[str, object]) -> VolumeMount:
    doc.keys(path, entry, _LONG_KEYS)
    kind = doc.string((*path, "type"), entry.get("type"))
    if kind not in ("bind", "volume", "tmpfs"):
        doc.fail((*path, "type"), f"mount type {kind!r} is not supported here (bind, volume, tmpfs)")
    if entry.get("target") is None:
        doc.fail(path, "a mount in the long syntax needs target: (the path in the container)")
    target = _target(doc, (*path, "target"), doc.string((*path, "target"), entry["target"]))
    source = doc.optional_string((*path, "source"), entry.get("source"))
    read_only = doc.boolean((*path, "read_only"), entry["read_only"]) if "read_only" in entry else False
    for other in ("bind", "volume", "tmpfs", "image"):
        if other in entry and other != kind:
            doc.fail((*path, other), f"{other}: options do not apply to a {kind} mount")
    options = doc.mapping((*path, kind), entry.get(kind))
    where = (*path, kind)
    if kind == "bind":
        doc.keys(where, options, ("propagation", "create_host_path", "selinux", "recursive"))
        propagation = doc.optional_string((*where, "propagation"), options.get("propagation"))
        if propagation not in (None, *_PRIVATE):
            doc.fail((*where, "propagation"), f"mount propagation {propagation!r} is not supported here "
                                               "(mounts are private)")
        if options.get("recursive") not in (None, "enabled"):
            doc.fail((*where, "recursive"), "only recursive: enabled is supported (submounts are kept)")
        if not source:
            doc.fail(path, "a bind mount needs source: (a host path)")
        return VolumeMount("bind", target, _bind_source(doc, (*path, "source"), source, directory), read_only)
    if kind == "volume":
        doc.keys(where, options, ("nocopy", "subpath", "labels"))
        nocopy = doc.boolean((*where, "nocopy"), options["nocopy"]) if "nocopy" in options else False
        subpath = doc.optional_string((*where, "subpath"), options.get("subpath"))
        if subpath is not None and (subpath.startswith("/") or ".." in Path(subpath).parts):
            doc.fail((*where, "subpath"), f"subpath {subpath!r} must be a relative path inside the volume")
        key = _volume_key(doc, (*path, "source"), source, volumes) if source else None
        return VolumeMount("volume", target, key, read_only, nocopy, subpath)
    doc.keys(where, options, ("size", "mode"))
    if source:
        doc.fail((*path, "source"), "a tmpfs mount has no source")
    mode = _mode(doc, (*where, "mode"), options["mode"]) if "mode" in options else None
    return VolumeMount("tmpfs", target, read_only=read_only, mode=mode)


def _mode(doc: Doc, path: KeyPath, value: Any) -> int:
    """A permission mode: a YAML integer (0755 reads as octal) or an octal string."""
    if isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            doc.fail(path, f"mode {value!r} is not an octal number")
    return doc.integer(path, value, minimum=0, maximum=0o7777)


def read_volumes(doc: Doc, path: KeyPath, value: Any, directory: Path,
                 volumes: Mapping[str, object]) -> list[VolumeMount]:
    """A service's ``volumes:``; named volumes must be among the project's ``volumes``."""
    if value is None:
        return []
    if not isinstance(value, list):
        doc.fail(path, f"must be a list of mounts, not {show(value)}")
    out = []
    for i, entry in enumerate(value):
        if isinstance(entry, str):
            out.append(_short(doc, (*path, i), entry, directory, volumes))
        elif isinstance(entry, dict):
            out.append(_long(doc, (*path, i), entry, directory, volumes))
        else:
            doc.fail((*path, i), f"must be SOURCE:TARGET[:MODE] or a mapping, not {show(entry)}")
    return out


def read_tmpfs(doc: Doc, path: KeyPath, value: Any) -> list[VolumeMount]:
    """The ``tmpfs:`` key: ``/path`` or ``/path:mode=755,size=...`` (one string or a list)."""
    out = []
    for i, text in enumerate(doc.strings(path, value, single=True)):
        where = (*path, i) if isinstance(value, list) else path
        target, _, options = text.partition(":")
        mode = None
        for option in filter(None, options.split(",")):
            name, _, setting = option.partition("=")
            if name == "mode":
                mode = _mode(doc, where, setting)
            elif name not in ("size", "uid", "gid", "noexec", "nosuid", "nodev", "exec", "suid", "dev", "rw"):
                doc.fail(where, f"unknown tmpfs option {name!r} (mode, size)")
            elif name in ("uid", "gid"):
                doc.warn(where, f"tmpfs {name} is not applied: the directory belongs to the container's root")
        out.append(VolumeMount("tmpfs", _target(doc, where, target), mode=mode))
    return out


def read_files(doc: Doc, path: KeyPath, value: Any, kind: str, sources: Mapping[str, FileSource]) -> list[FileMount]:
    """A service's ``configs:`` or ``secrets:`` grants (short: a name; long: source, target...)."""
    if value is None:
        return []
    if not isinstance(value, list):
        doc.fail(path, f"must be a list of {kind} names or mappings, not {show(value)}")
    out = []
    for i, entry in enumerate(value):
        where = (*path, i)
        if isinstance(entry, dict):
            doc.keys(where, entry, ("source", "target", "uid", "gid", "mode"))
            name = doc.string((*where, "source"), entry.get("source"))
            target = doc.optional_string((*where, "target"), entry.get("target"))
            if any(k in entry for k in ("uid", "gid", "mode")):
                doc.warn(where, "uid, gid and mode are not applied: the file is read-only, with its host mode")
        else:
            name, target = doc.string(where, entry), None
        source = sources.get(name)
        if source is None:
            doc.fail(where, f"{kind} {name!r} is not declared in the top-level {kind}s:")
        if target is None:
            target = f"/run/secrets/{name}" if kind == "secret" else f"/{name}"
        elif not target.startswith("/"):
            target = f"/run/secrets/{target}" if kind == "secret" else f"/{target}"
        out.append(FileMount(kind, name, target, source.file, source.content))
    return out
