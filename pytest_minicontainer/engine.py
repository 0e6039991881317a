"""The Engine: where images (the store) and the runtime (namespaces) meet.

It resolves references to :class:`Image` values, turns an image plus run options into the
runtime's container spec (overlay layers, host overlays, binds, hostname, network), and keeps
track of the containers it started so that :meth:`Engine.close` leaves nothing behind.
The runtime (a zygote process) starts lazily, on the first container, so that listing or
importing images costs no namespace.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ._commit import commit_container
from ._container_state import ContainerState
from ._engine_images import ImageResolver, ImageVerbs
from ._engine_networks import Joining, NetworkBook, slirp4netns
from ._env import checked_env
from ._namespace_trees import NamespaceTrees
from .container import Container
from .errors import ContainerError, MiniContainerError, RegistryError
from .image import DEFAULT_PATH, Image
from .images import init_files, init_layer
from .networks import Network, check_alias
from .options import Mount, RunOptions, as_mount, command_argv
from .paths import default_store_path
from .progress import Lines, lines_for
from .runtime import idmap as _idmap
from .runtime.client import Runtime, RuntimeContainer
from .runtime.messages import BindSpec, ContainerSpec, OverlaySpec
from .runtime.mounts import RESOLV_CONF
from .store import Store, TreeAccess

if TYPE_CHECKING:
    from .compose import Stack
    from .images.registry import RegistryOptions

__all__ = ["Engine", "default_store_path"]


class _Books:
    """The containers an Engine started (by id) and those of them started ahead (reserved)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.containers: dict[str, Container] = {}
        self.reserved: set[str] = set()

    def drop(self, cid: str) -> None:
        with self.lock:
            self.containers.pop(cid, None)
            self.reserved.discard(cid)

    def has(self, cid: str) -> bool:
        with self.lock:
            return cid in self.containers


class _Owner:
    """What the Engine's containers get of it (``container.ContainerOwner``): no more."""

    def __init__(self, engine: Engine, books: _Books, networks: NetworkBook) -> None:
        self.engine = engine
        self.books = books
        self.networks = networks

    def finished(self, container: ContainerState) -> None:
        if self.engine.on_finish is not None:
            self.engine.on_finish(cast(Container, container), container.exit_status)

    def forget(self, container: ContainerState) -> None:
        self.books.drop(container.id)
        self.networks.forget(container.id)

    def commit(self, container: ContainerState, tag: str | None,
               frozen: Callable[[], AbstractContextManager[None]]) -> Image:
        return commit_container(self.engine.store, self.engine.runtime, container, tag, frozen)


class Engine(ImageVerbs):
    """Images and containers for one process; a context manager that cleans up on exit."""

    def __init__(self, store: str | os.PathLike[str] | None = None, *,
                 image_resolver: ImageResolver | None = None,
                 on_start: Callable[[Container], None] | None = None,
                 on_finish: Callable[[Container, int | None], None] | None = None,
                 on_options: Callable[[RunOptions], object] | None = None,
                 pull: str | None = None, idmap: str | None = None,
                 announce: Callable[[str], None] | None = None,
                 cache_from: Sequence[str] | None = None, cache_to: str | None = None,
                 registry: RegistryOptions | None = None, max_layer_size: int | None = None) -> None:
        self._idmap_mode = idmap
        self._runtime: Runtime | None = None

        def trees(run_dir: Path) -> TreeAccess | None:
            """Rootless, store trees hold files only the user namespace may read, owners only it maps."""
            if self._idmap.kind == "root":
                return None
            return NamespaceTrees(self._live_runtime, run_dir, idmap, lambda: self._idmap.kind)

        self.store = Store(Path(store) if store is not None else default_store_path(), trees=trees)
        self.image_resolver = image_resolver
        # One line per image this engine downloads or builds ("pulled ...", "built ..."); the
        # plugin shows them in pytest's terminal, so that a long first run says what it does.
        self.announce = announce
        self.on_start = on_start
        self.on_finish = on_finish
        self.on_options = on_options
        self.pull = pull  # the default pull policy of image() (None: "missing")
        # build()'s defaults of cache_from and cache_to (None: $MINICONTAINER_CACHE_FROM/_TO);
        # the plugin passes its options and ini keys here
        self.cache_from = None if cache_from is None else tuple(cache_from)
        self.cache_to = cache_to
        # Registry settings (mirror, insecure registries, timeout) of every pull, build cache
        # and push, and the bytes one layer may unpack to (pulls, imports, ADD); None: the
        # environment's ($MINICONTAINER_REGISTRY_*, $MINICONTAINER_MAX_LAYER_SIZE), read
        # when used.  The plugin passes its ini keys here (the environment winning).
        if max_layer_size is not None and max_layer_size <= 0:
            raise ValueError(f"max_layer_size must be a number of bytes greater than 0, not {max_layer_size!r}")
        self.registry = registry
        self.max_layer_size = max_layer_size
        self._lock = threading.RLock()
        self._closed = False
        self._empty: Path | None = None
        self._image_cache: dict[str, Image] = {}
        self._pulled: dict[tuple[str, str | None], Image] = {}  # pulled with "always" in this session
        self._unreachable: dict[tuple[str, str | None], RegistryError] = {}  # whose registry did not answer
        self._pinned: set[str] = set()
        self._books = _Books()
        self._containers = self._books.containers  # every container it started, by id (ahead ones too)
        self._networks = NetworkBook(self, lambda: self.runtime, lambda: self._runtime, self._books.has)
        self._owner = _Owner(self, self._books, self._networks)
        self._init: dict[str, str | None] = {}  # image digest: its containers' init layer (images._init_layer)

    # -- context -----------------------------------------------------------------------------
    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop and remove every container, stop the runtime and remove its scratch space."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._books.lock:
            containers = list(self._books.containers.values())
        for c in containers:
            with contextlib.suppress(MiniContainerError, OSError):
                c.remove()
        self._networks.close()
        if self._runtime is not None:
            self._runtime.close()

    # -- facts ----------------------------------------------------------------------------------
    @property
    def store_path(self) -> Path:
        return self.store.root

    @property
    def runtime(self) -> Runtime:
        """The runtime, started on first use (raises RuntimeUnavailable on a refusing host)."""
        with self._lock:
            if self._closed:
                raise MiniContainerError("this Engine is closed")
            if self._runtime is None:
                self._runtime = Runtime(self.store.run_dir, self._idmap_mode)
                with contextlib.suppress(OSError, MiniContainerError):
                    self._runtime.clean_stale()
            return self._runtime

    def _live_runtime(self) -> Runtime | None:
        """The runtime (started if need be) while the engine is open; None once it closed."""
        return None if self._closed else self.runtime

    def start(self) -> None:
        """Start the runtime now (it starts on the first container otherwise).

        Raises RuntimeUnavailable, with the fix, on a host that refuses containers.
        """
        self.runtime  # noqa: B018 - the property starts it

    @property
    def _idmap(self) -> _idmap.IdMap:
        # the runtime's own choice once it runs; before that the same choice, made cheaply
        return self._runtime.idmap if self._runtime is not None else _idmap.choose(self._idmap_mode)

    @property
    def mode(self) -> str:
        """``root`` or ``rootless`` (does not start the runtime)."""
        return "root" if os.geteuid() == 0 and self._idmap.kind == "root" else "rootless"

    @property
    def id_mapping(self) -> str:
        """How ids inside containers map to the host's (does not start the runtime)."""
        return self._idmap.describe()

    @property
    def containers(self) -> list[Container]:
        """The containers of this engine that are in use (not those a session started ahead)."""
        with self._books.lock:
            return [c for c in self._books.containers.values() if c.id not in self._books.reserved]

    def reserve(self, container: Container) -> None:
        """Keep ``container`` out of :attr:`containers` until :meth:`release`: it was started
        for a test that has not begun (``pytest_minicontainer.ahead``) and belongs to nobody yet."""
        with self._books.lock:
            self._books.reserved.add(container.id)

    def release(self, container: Container) -> None:
        with self._books.lock:
            self._books.reserved.discard(container.id)

    @staticmethod
    def probe(store: str | os.PathLike[str] | None = None) -> None:
        """Raise RuntimeUnavailable (with the fix) unless this host can run a container now."""
        with tempfile.TemporaryDirectory(prefix="minicontainer-probe-") as tmp:
            rt = Runtime(Path(store or tmp) / "run")
            try:
                empty = Path(tmp) / "empty"
                empty.mkdir(exist_ok=True)
                c = rt.create({"lowers": [str(empty)], "hostname": "probe", "network": "none"})
                c.destroy(remove=True)
            finally:
                rt.close()

    def build(self, containerfile: str | os.PathLike[str] | None = None, context: str | os.PathLike[str] = ".", *,
              tag: str | None = None, build_args: Mapping[str, str] | None = None, target: str | None = None,
              network: str = "default", no_cache: bool = False, progress: Lines | bool | None = None,
              secrets: Mapping[str, str | os.PathLike[str]] | None = None, cache_to: str | None = None,
              cache_from: str | Sequence[str] | None = None,
              ssh: Mapping[str, str | os.PathLike[str]] | None = None) -> Image:
        """Build an image from a Containerfile (a path or its text) with this engine's runtime.

        RUN steps get ``network="default"``: a private network with outbound access through
        slirp4netns and no route to the host's loopback, or none (and a line on stderr saying
        how to get it) where slirp4netns cannot run; ``"slirp"``, ``"host"`` and ``"none"``
        ask for one of those.  ``progress``: a callable gets one line per step (``STEP 2/5:
        RUN ...``, ``---> cached``) and a few per layer a pull for ``FROM`` downloads; True
        prints them on stderr.  ``secrets`` ({id: file}) are what ``RUN --mount=type=secret,id=...``
        mounts; they never land in a layer or in a step's cache key.  ``ssh`` ({id: agent socket})
        is what ``RUN --mount=type=ssh`` mounts (``default``: ``$SSH_AUTH_SOCK`` when not given).

        ``cache_to`` (a registry name, ``host/name:tag``) receives every step of the build as a
        cache; a build elsewhere with that name in ``cache_from`` takes each step it finds there
        (its layer pulled, a RUN not run again) instead of running it.  Unset, they default to
        the Engine's ``cache_to`` and ``cache_from`` (the pytest options and ini keys give them),
        else ``$MINICONTAINER_CACHE_TO`` and ``$MINICONTAINER_CACHE_FROM``.
        """
        from .build import build

        return build(self, containerfile, context, tag=tag, build_args=build_args, target=target,
                     network=network, no_cache=no_cache, progress=lines_for(progress), secrets=secrets,
                     cache_to=cache_to if cache_to is not None else self.cache_to,
                     cache_from=cache_from if cache_from is not None else self.cache_from, ssh=ssh,
                     registry_options=self.registry, max_layer_size=self.max_layer_size)

    # -- compose --------------------------------------------------------------------------------
    def compose(self, path: str | os.PathLike[str], *, project: str | None = None,
                env: Mapping[str, str] | None = None, profiles: Sequence[str] = ()) -> Stack:
        """A compose project (a ``compose.yaml``, or the directory holding one), ready to ``up()``.

        The file is read, interpolated (``env=``, then the process's environment, then the
        ``.env`` beside it) and validated now; ComposeError names file, line, service and key.
        Every ``stack.up()`` starts a stack of its own (networks, volumes, containers).
        """
        from .compose import Stack, load

        return Stack(self, load(path, project=project, env=env, profiles=profiles))

    # -- networks -------------------------------------------------------------------------------
    def network(self, name: str | None = None, *, outbound: bool = False) -> Network:
        """A private network for containers to find each other on (see :mod:`.networks`).

        ``engine.run(..., network=net, aliases=[...])`` makes a container a member; members
        reach each other by hostname, container id and alias.  ``name`` (default: made up)
        lets ``run(network="name")`` find it; asking again for a name gives the same network.
        ``outbound=True`` gives members a way out through slirp4netns, never to the host's
        loopback.  The Engine removes its networks when it closes.
        """
        return self._networks.network(name, outbound)

    # -- containers -----------------------------------------------------------------------------
    def run(self, image: Image | str, command: str | Sequence[str] | None = None, *,
            env: Mapping[str, str] | None = None, workdir: str | None = None, user: str | None = None,
            mounts: Sequence[Mount | str | tuple[Any, ...]] | None = None, network: str | Network = "none",
            hostname: str | None = None, ports: Sequence[int] | None = None,
            aliases: Sequence[str] | None = None) -> Container:
        """Start a container from ``image`` and return it (a context manager that removes it).

        ``command=None`` runs the image's Entrypoint + Cmd as the main process, ``()`` none,
        a list (or a shell string) that command.  ``ports`` are published on 127.0.0.1 at
        start (``container.ports[port]`` gives the address).  ``network``: "none" (default,
        loopback only), "host", "slirp" (outbound), or a :class:`Network` (or the name of
        one, made on first use) whose members find this one by hostname, id and ``aliases``.
        The same as :meth:`start_container` with these as a :class:`RunOptions`.
        """
        return self.start_container(RunOptions(
            image=image, command=command, env=dict(env or {}), workdir=workdir, user=user,
            mounts=list(mounts or ()), network=network, hostname=hostname, ports=list(ports or ()),
            aliases=list(aliases or ())))

    def start_container(self, options: RunOptions) -> Container:
        """Start a container as ``options`` say (see :meth:`run`); ``options.image`` is required.

        ``on_options`` (the pytest hook ``pytest_minicontainer_container_options``) has the last
        word first: it may change a copy of ``options`` in place (the caller's stays as it was).
        """
        options = options.copy()
        if self.on_options is not None:
            self.on_options(options)
        if options.image is None:
            raise ValueError("RunOptions.image is required: the image to start a container from")
        img = self.image(options.image)
        net, mode = self._networks.resolve(options.network)
        names = [check_alias(a) for a in (options.aliases or ())]
        if names and net is None:
            raise ValueError("aliases are names on a network: pass network=engine.network(...) (or a name) too")
        hostname = options.hostname
        if hostname is not None and net is not None:
            check_alias(hostname)
        slirp = slirp4netns() if mode == "slirp" else None
        mounts = [as_mount(m) for m in (options.mounts or ())]
        for m in mounts:
            if not os.path.exists(m.source):
                raise ContainerError(f"mount source {m.source} does not exist on the host")
            if not str(m.target).startswith("/"):
                raise ContainerError(f"mount target {m.target!r} must be an absolute path")
            if os.path.normpath(m.target) == "/":
                raise ContainerError(f"mount {m.source} -> {m.target!r}: the container's root cannot be a mount "
                                     "target (it would hide the image); mount below it, e.g. /data, or make "
                                     f"the directory an image with rootfs:{m.source}")
        cfg = img.config
        main = _main_command(options.command, cfg.default_command())
        full_env = {"PATH": DEFAULT_PATH, **cfg.env_dict, **checked_env(options.env)}
        run_user = options.user if options.user is not None else (cfg.user or None)
        rt = self.runtime
        self._pin(img, rt)
        spec = self._spec(img, mounts, mode, hostname)
        if slirp is not None:
            spec["slirp4netns"] = slirp
        joining: Joining | None = self._networks.prepare(net, spec, rt.scratch) if net is not None else None
        try:
            handle = rt.create(spec)
        except BaseException:
            if joining is not None:
                self._networks.abort(joining)
            raise
        try:
            if run_user is not None:  # on the runtime's handle, before there is a Container
                self._check_user(handle, run_user, img)
        except BaseException:
            with contextlib.suppress(MiniContainerError, OSError):
                handle.destroy(remove=True)
            if joining is not None:
                self._networks.abort(joining)
            raise
        name = hostname or handle.id
        if joining is not None:
            self._networks.admit(handle, joining, [name, handle.id, *names])
        full_env.setdefault("HOSTNAME", name)
        # the main process starts in the constructor; one that cannot start removes its container
        container = Container(self, self._owner, handle, img, command=main, env=full_env,
                              workdir=options.workdir or cfg.workdir or "/", user=run_user, hostname=name,
                              network=net.name if net is not None else mode, mounts=mounts, mode=mode,
                              ip=joining.ip if joining is not None else None, aliases=names)
        with self._books.lock:
            self._books.containers[handle.id] = container
        try:
            for port in options.ports or ():
                container.publish(int(port))
        except BaseException:
            container.remove()
            raise
        if self.on_start is not None:
            self.on_start(container)
        return container

    def _pin(self, img: Image, rt: Runtime) -> None:
        """Tell the store's garbage collector that this session mounts ``img``'s layers."""
        new = [d for d in img.layer_dirs if d not in self._pinned]
        if new:
            self.store.pin(rt.scratch, new)
            self._pinned.update(new)

    def _empty_layer(self) -> str:
        if self._empty is None:
            path = self.store.root / "empty"
            path.mkdir(exist_ok=True)
            self._empty = path
        return str(self._empty)

    def _spec(self, img: Image, mounts: Sequence[Mount], network: str, hostname: str | None) -> ContainerSpec:
        """The runtime's description of the container (see ``runtime.mounts``)."""
        overlays: list[OverlaySpec] = []
        for hdir in img.host_dirs:
            rel = hdir.lstrip("/")
            lowers = [hdir] + [os.path.join(layer, rel) for layer in img.layer_dirs
                               if os.path.isdir(os.path.join(layer, rel))]
            overlays.append({"target": hdir, "lowers": lowers})
        binds: list[BindSpec] = [{"source": os.path.abspath(m.source), "target": m.target, "readonly": m.readonly}
                                 for m in mounts]
        # Name resolution for networks that reach out, as Docker sets it up: ``host`` shares
        # the host's resolver configuration, ``slirp`` gets a file pointing at slirp4netns's
        # DNS forwarder; a private network has no resolver to point at.
        if network == "host" and os.path.isfile(RESOLV_CONF):
            binds.append({"source": RESOLV_CONF, "target": RESOLV_CONF, "readonly": True, "optional": True})
        lowers = list(img.layer_dirs) or [self._empty_layer()]
        if img.digest not in self._init:  # once per image: a container's start only looks it up
            files = init_files(img)
            self._init[img.digest] = init_layer(self.store.root, files) if files else None
        init = self._init[img.digest]
        if init is not None:  # Docker's /etc/mtab and /etc/hosts, in a layer of their own that no commit saves
            lowers.append(init)
        return {
            "lowers": lowers,
            "overlays": overlays,
            "binds": binds,
            "resolv": "slirp" if network == "slirp" else None,
            "hostname": hostname,
            "network": network,
        }

    def _check_user(self, handle: RuntimeContainer, user: str, image: Image) -> None:
        try:
            uid, gid = handle.resolve_user(user)
        except OSError as exc:
            raise ContainerError(f"cannot resolve user {user!r} in the image: {exc}") from exc
        idmap = self.runtime.idmap
        if max(uid, gid) > idmap.max_uid:
            raise ContainerError(
                f"user {user!r} (uid {uid}, gid {gid}) of image {image} cannot be represented: "
                f"this rootless runtime maps only {idmap.describe()}.\n  fix: give your user a range in "
                "/etc/subuid and /etc/subgid (e.g. `sudo usermod --add-subuids 100000-165535 "
                "--add-subgids 100000-165535 $USER`) and install newuidmap/newgidmap (package uidmap), "
                "or pass user=\"root\"")


def _main_command(command: str | Sequence[str] | None, default: list[str] | None) -> list[str] | None:
    """The main process's argv: the image's default for None, none for an empty one."""
    if command is None:
        return default
    return command_argv(command) or None
