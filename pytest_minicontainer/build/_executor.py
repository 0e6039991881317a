"""Run a planned build: each step once, or not at all when the cache has it.

Steps are executed in order; the image after each step is the parent of the next.  A step
whose result the cache holds costs a lock, a small file read and an image record read, and
starts no container, which is how a rebuild with nothing changed stays well under 100 ms.
RUN steps start a container of the parent image (as its USER, in its WORKDIR, with its ENV
plus the ARGs in scope), run the command with ``exec`` and keep the writable layer.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..container import Mount
from ..errors import BuildError, MiniContainerError
from ..image import Image
from ..images import ImageView
from . import _cache
from ._copy import inline_sources, make_dirs, parse_chown, stage_files
from ._ignore import IgnoreRules
from ._layers import commit_upper, config_image, layer_image
from ._mounts import RunMounts
from ._plan import Stage, Step
from ._remote import CacheExport, RemoteCache

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["Executor"]

OUTPUT_TAIL = 30


def _tail(text: str, lines: int = OUTPUT_TAIL) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Executor:
    """Executes the stages of one build with ``engine``."""

    def __init__(self, engine: Engine, *, ignore: IgnoreRules, network: str, no_cache: bool,
                 context: str, progress: Callable[[str], None] | None = None,
                 secrets: Mapping[str, str] | None = None, remote: RemoteCache | None = None,
                 export: CacheExport | None = None, ssh: Mapping[str, str] | None = None,
                 max_layer_size: int | None = None) -> None:
        self.context = context
        self.ssh = dict(ssh or {})  # RUN --mount=type=ssh: id -> agent socket
        self.remote = remote  # cache_from: steps another machine ran
        self.export = export  # cache_to: every step this build passes through
        self.secrets = dict(secrets or {})
        self.max_layer_size = max_layer_size  # what an archive ADD extracts may unpack to (None: env)
        self.engine = engine
        self.store = engine.store
        self.ignore = ignore
        self.network = network
        self.no_cache = no_cache
        self.progress = progress or (lambda _msg: None)
        self.stage_images: list[Image] = []
        self.steps_run = 0  # steps that actually executed (not cached, not metadata)
        self._stage_names: dict[int, str] = {}

    def run(self, stages: list[Stage]) -> Image:
        total = sum(1 + len(s.steps) for s in stages)
        n = 0
        for stage in stages:
            if stage.name:
                self._stage_names[stage.index] = stage.name
            n += 1
            self.progress(f"STEP {n}/{total}: FROM {stage.base}" + (f" AS {stage.name}" if stage.name else ""))
            if stage.base_stage is not None:
                image = self.stage_images[stage.base_stage]
            else:
                assert stage.base_image is not None
                image = stage.base_image
            for step in stage.steps:
                n += 1
                self.progress(f"STEP {n}/{total}: {step.display or step.text}")
                image = self.step(step, image)
            self.stage_images.append(image)
        return self.stage_images[-1]

    # -- one step ------------------------------------------------------------------------------
    def step(self, step: Step, parent: Image) -> Image:
        if step.kind == "META":
            return config_image(parent, step.config)
        source: Image | None = None
        if step.from_ref is not None:
            source = self._source_image(step)
        froms = " ".join(self._mount_image(step, dict(m)["from"]).digest for m in step.mounts if "from" in dict(m))
        key = _cache.step_key(parent, step.text, step.content, source.digest if source else froms)
        image = self._step(step, parent, source, key)
        if self.export is not None:
            self.export.add(key, parent, image)
        return image

    def _step(self, step: Step, parent: Image, source: Image | None, key: str) -> Image:
        with self.store.lock("build", key):
            if not self.no_cache:
                hit = _cache.lookup(self.store, key, parent)
                if hit is not None:
                    self.progress("  ---> cached")
                    return hit
                hit = self.remote.lookup(key, parent) if self.remote is not None else None
                if hit is not None:
                    _cache.record(self.store, key, hit)
                    self.progress(f"  ---> {hit.short_id} (from the registry cache)")
                    return hit
            if step.kind == "RUN":
                image = self._run(step, parent)
            elif step.kind in ("WORKDIR", "VOLUME"):
                image = self._workdir(step, parent)
            else:
                image = self._copy(step, parent, source)
            self.steps_run += 1
            _cache.record(self.store, key, image)
            self.progress(f"  ---> {image.short_id}")
            return image

    def _mount_image(self, step: Step, ref: str) -> Image:
        """The stage or image a ``RUN --mount=...,from=REF`` reads."""
        return self._source_image(step, ref, what="RUN --mount=type=bind,from")

    def _source_image(self, step: Step, ref: str | None = None, what: str = "") -> Image:
        if ref is None:
            ref = step.from_ref or ""
        what = what or f"{step.kind} --from"
        for index, image in enumerate(self.stage_images):
            if ref in (str(index), self._stage_names.get(index)):
                return image
        try:
            return self.engine.image(ref)
        except MiniContainerError as exc:
            raise BuildError(f"{what}={ref}: {exc}", line=step.line, command=step.text) from exc

    def _run(self, step: Step, parent: Image) -> Image:
        command = _run_text(step)
        with RunMounts(self.store, self.context, self.secrets, step.mounts, step.line, command,
                       ssh=self.ssh, image=lambda ref: self._mount_image(step, ref)) as mounts:
            return self._run_in(step, parent, command, mounts)

    def _run_in(self, step: Step, parent: Image, command: str, mounts: list[Mount]) -> Image:
        cfg = step.config
        try:
            network = self.network if step.network == "default" else step.network
            container = self.engine.run(parent, command=(), env=step.run_env, workdir=cfg.workdir or "/",
                                        user=cfg.user or None, network=network, mounts=mounts)
        except MiniContainerError as exc:
            raise BuildError(f"RUN: cannot start a container of the parent image: {exc}", line=step.line,
                             command=command) from exc
        try:
            try:
                # every line as it is written, stdout and stderr in their order (a long apt-get
                # install is not minutes of silence); the tail of it goes into a BuildError
                result = container.exec(list(step.argv), on_output=self.progress)
            except MiniContainerError as exc:
                raise BuildError(f"RUN could not be started: {exc}", line=step.line, command=command) from exc
            output = result.stdout
            if result.returncode != 0:
                tail = _tail(output)
                raise BuildError(f"RUN {command} failed with exit status {result.returncode}"
                                 + (f":\n{tail}" if tail else ""), line=step.line, command=command,
                                 status=result.returncode, output=tail)
            container.stop(timeout=0)
            with self.store.in_use():
                return commit_upper(self.store, container, parent, cfg, stubs=[m.target for m in mounts])
        finally:
            with contextlib.suppress(MiniContainerError, OSError):
                container.remove()

    def _workdir(self, step: Step, parent: Image) -> Image:
        """WORKDIR and VOLUME: the directories made where the image lacks them."""
        view = ImageView(parent)
        missing = []
        for path in step.from_paths if step.kind == "VOLUME" else (step.dest,):
            rel = view.resolve(path)
            found = view.entry(rel) if rel is not None else None
            if not ((found is not None and os.path.isdir(found)) or path == "/"):
                missing.append(path)
        if not missing:
            return config_image(parent, step.config)
        tmp = self.store.new_tmp_dir("build-workdir-")
        try:
            for path in missing:
                make_dirs(tmp, view, step, path)
            with self.store.in_use():
                return layer_image(self.store, parent, tmp, step.config)
        except BaseException:
            with contextlib.suppress(OSError):
                self.store.discard_tmp(tmp)
            raise

    def _copy(self, step: Step, parent: Image, source: Image | None) -> Image:
        view = ImageView(parent)
        owner = parse_chown(step.chown, view, step) if step.chown else None
        tmp = self.store.new_tmp_dir("build-copy-")
        scratch: list[Path] = []

        def new_scratch() -> Path:
            scratch.append(self.store.new_tmp_dir("build-add-"))
            return scratch[-1]

        try:
            if step.inline:  # heredocs: files of the Containerfile, written out to be copied like the others
                step = inline_sources(step, new_scratch())
            owned = stage_files(step, tmp, view, source_view=ImageView(source) if source else None,
                                ignore=self.ignore, owner=owner, scratch=new_scratch,
                                max_layer_size=self.max_layer_size)
            with self.store.in_use():
                image = layer_image(self.store, parent, tmp, step.config)
        except BaseException:
            with contextlib.suppress(OSError):
                self.store.discard_tmp(tmp)
            raise
        finally:
            for d in scratch:
                with contextlib.suppress(OSError):
                    self.store.discard_tmp(d)
        if owner is not None and owner != (0, 0) and os.geteuid() != 0 and owned:
            image = self._chown_inside(step, image, _chown_commands(owner, owned, view))
        return image

    def _chown_inside(self, step: Step, image: Image, commands: list[list[str]]) -> Image:
        """Rootless --chown to a non-root id: the host cannot, the user namespace can."""
        try:
            container = self.engine.run(image, command=(), user="0:0", network="none")
        except MiniContainerError as exc:
            raise BuildError(f"{step.kind} --chown: cannot start a container to change owners: {exc}",
                             line=step.line, command=step.text) from exc
        try:
            for argv in commands:
                result = container.exec(argv)
                if result.returncode == 0:
                    continue
                raise BuildError(
                    f"{step.kind} --chown={step.chown}: a rootless build changes owners with `chown` inside the "
                    f"image, which failed ({_tail(result.stderr, 3) or result.returncode}); the image needs chown, "
                    "and ids other than 0 need a subordinate id range (fix: sudo usermod --add-subuids "
                    "100000-165535 --add-subgids 100000-165535 $USER; install uidmap)",
                    line=step.line, command=step.text, status=result.returncode, output=result.stderr)
            container.stop(timeout=0)
            with self.store.in_use():
                return commit_upper(self.store, container, image, step.config)
        finally:
            with contextlib.suppress(MiniContainerError, OSError):
                container.remove()


# bytes of paths per chown command, well below ARG_MAX (128 KiB per argument, 2 MiB in all)
_ARGV_BYTES = 64 * 1024


def _chown_commands(owner: tuple[int, int], owned: list[str], parent: ImageView) -> list[list[str]]:
    """``chown`` commands giving exactly the layer paths ``owned`` to ``owner``.

    ``owned`` lists every entry the step copied or created (see ``stage_files``), so a
    directory the parent image did not have holds nothing else: it is given with everything
    below in one ``-R``.  Anything else is given alone (``-h``), so that the image's own files
    around the copy (``/usr/local``, its other files) keep their owners.  Long lists are
    split over several commands to stay below the kernel's argument limits.
    """
    trees: list[str] = []
    single: list[str] = []
    covered: str | None = None  # the last tree: everything below it is given already
    for rel in sorted(set(owned), key=lambda r: r.split("/")):  # a tree's entries right after it
        if covered is not None and rel.startswith(covered + "/"):
            continue
        found = parent.entry(rel)
        if found is None or not os.path.isdir(found) or os.path.islink(found):
            trees.append("/" + rel)  # new here (or replacing a non-directory): all of it is the copy's
            covered = rel
        else:
            single.append("/" + rel)
    spec = f"{owner[0]}:{owner[1]}"
    commands: list[list[str]] = []
    for flags, paths in (("-hR", trees), ("-h", single)):
        chunk: list[str] = []
        size = 0
        for path in paths:
            length = len(os.fsencode(path)) + 1
            if chunk and size + length > _ARGV_BYTES:
                commands.append(["chown", flags, spec, *chunk])
                chunk, size = [], 0
            chunk.append(path)
            size += length
        if chunk:
            commands.append(["chown", flags, spec, *chunk])
    return commands


def _run_text(step: Step) -> str:
    """The command of a RUN as the user wrote it (the shell form without its shell)."""
    argv = list(step.argv)
    if len(argv) >= 2 and argv[-2] == "-c" and posixpath.basename(argv[0]) in ("sh", "bash", "ash", "dash"):
        return argv[-1]
    return shlex.join(argv)
