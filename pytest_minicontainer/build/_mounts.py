"""``RUN --mount``: what a step sees besides its image, set up on the host before it runs.

Every mount is a bind of a host path into the step's container, so nothing written there
lands in the step's layer: ``cache`` is a directory of the store kept across builds and
sessions (by ``id``), ``bind`` a path of the build context (read-only, or a throw-away copy
with ``rw``) or, with ``from=``, a copy of a path of an earlier stage or an image (an image's
files are spread over its layers: they are merged into a throw-away directory), ``tmpfs`` an
empty directory for the step, ``secret`` a file the caller gave ``engine.build(secrets={id:
path})``, ``ssh`` the SSH agent socket given as ``engine.build(ssh={id: socket})``.

The empty files and directories the runtime makes to mount on are taken out of the layer
afterwards (``images.drop_mount_stubs``), as BuildKit removes its mount stubs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..container import Mount
from ..errors import BuildError
from ..image import Image
from ..images import ImageView
from ..store import Store
from ._copy import copy_from_image

__all__ = ["RunMounts"]


class RunMounts:
    """The host side of one RUN's mounts: ``with RunMounts(...) as mounts`` gives the engine's
    :class:`Mount` list, and releases locks and throw-away directories afterwards."""

    def __init__(self, store: Store, context: str, secrets: Mapping[str, str], specs: Sequence[Any],
                 line: int, command: str, *, ssh: Mapping[str, str] | None = None,
                 image: Callable[[str], Image] | None = None) -> None:
        self.store, self.context, self.secrets = store, context, secrets
        self.ssh = ssh or {}
        self.image = image
        self.specs = [dict(spec) for spec in specs]
        self.line, self.command = line, command
        self.targets: list[str] = []
        self._locks: list[Any] = []
        self._tmps: list[Path] = []

    def _fail(self, message: str) -> BuildError:
        return BuildError(f"RUN --mount: {message}", line=self.line, command=self.command)

    def __enter__(self) -> list[Mount]:
        try:
            mounts = [m for m in (self._one(spec) for spec in self.specs) if m is not None]
        except BaseException:
            self.__exit__()
            raise
        self.targets = [m.target for m in mounts]
        return mounts

    def __exit__(self, *_exc: object) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()
        for tmp in self._tmps:
            with contextlib.suppress(OSError):
                self.store.discard_tmp(tmp)
        self._tmps.clear()

    def _one(self, spec: dict[str, str]) -> Mount | None:
        kind, target = spec["type"], spec["target"]
        if kind == "cache":
            key = hashlib.sha256(spec["id"].encode()).hexdigest()[:32]
            path = self.store.cache_mounts / key
            path.mkdir(parents=True, exist_ok=True)
            if "mode" in spec:
                try:
                    os.chmod(path, int(spec["mode"], 8))
                except ValueError:
                    raise self._fail(f"mode={spec['mode']} is not an octal mode") from None
            if spec["sharing"] != "shared":
                # locked: one step at a time; private waits as well instead of making a second
                # cache (a build here runs one step at a time anyway)
                lock = self.store.lock("build-cache", key)
                lock.acquire()
                self._locks.append(lock)
            return Mount(str(path), target, readonly=spec.get("ro", spec.get("readonly", "false")) == "true")
        if kind == "bind" and "from" in spec:
            return self._from_image(spec)
        if kind == "bind":
            root = os.path.realpath(self.context)
            source = os.path.realpath(os.path.join(root, spec["source"].lstrip("/")))
            if source != root and not source.startswith(root + os.sep):
                raise self._fail(f"source={spec['source']} leads out of the build context")
            if not os.path.exists(source):
                raise self._fail(f"source={spec['source']} is not in the build context {self.context}")
            if spec.get("rw", spec.get("readwrite", "false")) != "true":
                return Mount(source, target, readonly=True)
            copy = self.store.new_tmp_dir("build-bind-")  # rw: writes go to a copy, thrown away
            self._tmps.append(copy)
            if os.path.isdir(source):
                shutil.copytree(source, copy / "tree", symlinks=True)
                return Mount(str(copy / "tree"), target)
            shutil.copy2(source, copy / "file")
            return Mount(str(copy / "file"), target)
        if kind == "tmpfs":
            tmp = self.store.new_tmp_dir("build-tmpfs-")
            self._tmps.append(tmp)
            return Mount(str(tmp), target)
        if kind == "ssh":
            return self._ssh(spec)
        # secret
        given = self.secrets.get(spec["id"])
        if given is None:
            if spec.get("required", "false") == "true":
                raise self._fail(f"secret {spec['id']!r} is required and was not given (engine.build(secrets="
                                 f"{{{spec['id']!r}: path}}), minicontainer build --secret id={spec['id']},src=PATH)")
            return None
        if not os.path.isfile(given):
            raise self._fail(f"secret {spec['id']!r}: {given} is not a file")
        return Mount(os.path.abspath(given), target, readonly=True)

    def _from_image(self, spec: dict[str, str]) -> Mount:
        """``from=STAGE|IMAGE``: ``source`` of that image, merged from its layers into a
        throw-away directory (``rw`` writes go there too, and are gone after the step)."""
        if self.image is None:
            raise self._fail(f"from={spec['from']}: no stage or image to read here")
        image = self.image(spec["from"])
        view = ImageView(image)
        if view.resolve(spec["source"]) is None:
            raise self._fail(f"source={spec['source']} does not exist in {spec['from']}")
        tmp = self.store.new_tmp_dir("build-from-")
        self._tmps.append(tmp)
        copy = copy_from_image(view, spec["source"], tmp, line=self.line, command=self.command)
        return Mount(str(copy), spec["target"], readonly=spec.get("rw", spec.get("readwrite", "false")) != "true")

    def _ssh(self, spec: dict[str, str]) -> Mount | None:
        socket = self.ssh.get(spec["id"])
        if socket is None and spec["id"] == "default" and os.environ.get("SSH_AUTH_SOCK"):
            socket = os.environ["SSH_AUTH_SOCK"]
        if socket is None:
            if spec.get("required", "false") == "true":
                raise self._fail(f"ssh {spec['id']!r} is required and was not given (engine.build(ssh="
                                 f"{{{spec['id']!r}: socket}}), minicontainer build --ssh {spec['id']}=SOCKET)")
            return None
        if not os.path.exists(socket):
            raise self._fail(f"ssh {spec['id']!r}: the agent socket {socket} does not exist")
        return Mount(os.path.abspath(socket), spec["target"])
