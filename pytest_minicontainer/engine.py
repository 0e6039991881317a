"""The Engine: where images (the store) and the runtime (namespaces) meet.

It resolves references to :class:`Image` values, turns an image plus run options into the
runtime's container spec (overlay layers, host overlays, binds, hostname, network), and keeps
track of the containers it started so that :meth:`Engine.close` leaves nothing behind.
The runtime (a zygote process) starts lazily, on the first container, so that listing or
importing images costs no namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._env import checked_env
from .container import Container
from .errors import (
    ContainerError,
    ImageError,
    ImageNotFound,
    MiniContainerError,
    RegistryError,
    RuntimeUnavailable,
    StoreError,
)
from .image import DEFAULT_PATH, Image
from .images._init_layer import init_files, init_layer
from .images._stubs import drop_mount_stubs
from .networks import Network, check_alias, write_hosts
from .options import NETWORKS, Mount, RunOptions, as_mount, command_argv
from .paths import default_store_path
from .progress import BlobLines, Lines, human_size, lines_for
from .runtime import idmap as _idmap
from .runtime.client import Runtime
from .runtime.mounts import HOSTS, RESOLV_CONF
from .store import Owner, Store, TreeAccess, tree_size

if TYPE_CHECKING:
    from .compose import Stack

__all__ = ["Engine", "default_store_path"]

ImageResolver = Callable[[str], "Image | str | None"]


class Engine:
    """Images and containers for one process; a context manager that cleans up on exit."""

    def __init__(self, store: str | os.PathLike[str] | None = None, *,
                 image_resolver: ImageResolver | None = None,
                 on_start: Callable[[Container], None] | None = None,
                 on_finish: Callable[[Container, int | None], None] | None = None,
                 on_options: Callable[[RunOptions], object] | None = None,
                 pull: str | None = None, idmap: str | None = None,
                 announce: Callable[[str], None] | None = None) -> None:
        self.store = Store(Path(store) if store is not None else default_store_path())
        self.image_resolver = image_resolver
        # One line per image this engine downloads or builds ("pulled ...", "built ..."); the
        # plugin shows them in pytest's terminal, so that a long first run says what it does.
        self.announce = announce
        self.on_start = on_start
        self.on_finish = on_finish
        self.on_options = on_options
        self.pull = pull  # the default pull policy of image() (None: "missing")
        self._idmap_mode = idmap
        self._runtime: Runtime | None = None
        self._containers: dict[str, Container] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._empty: Path | None = None
        self._image_cache: dict[str, Image] = {}
        self._pulled: dict[tuple[str, str | None], Image] = {}  # pulled with "always" in this session
        self._unreachable: dict[tuple[str, str | None], RegistryError] = {}  # whose registry did not answer
        self._pinned: set[str] = set()
        self._networks: dict[str, Network] = {}  # engine.network(): by name
        self._network_count = 0
        self._reserved: set[str] = set()  # ids of containers started ahead (see reserve)
        self._init: dict[str, str | None] = {}  # image digest: its containers' init layer (images._init_layer)
        if self._idmap.kind != "root":  # files only the user namespace may read, owners only it maps
            self.store.trees = _NamespaceTrees(self)

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
            containers = list(self._containers.values())
        for c in containers:
            with contextlib.suppress(MiniContainerError, OSError):
                c.remove()
        for net in list(self._networks.values()):
            with contextlib.suppress(MiniContainerError, OSError):
                self._remove_network(net, closing=True)
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
        with self._lock:
            return [c for c in self._containers.values() if c.id not in self._reserved]

    def reserve(self, container: Container) -> None:
        """Keep ``container`` out of :attr:`containers` until :meth:`release`: it was started
        for a test that has not begun (``pytest_minicontainer.ahead``) and belongs to nobody yet."""
        with self._lock:
            self._reserved.add(container.id)

    def release(self, container: Container) -> None:
        with self._lock:
            self._reserved.discard(container.id)

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

    # -- images ---------------------------------------------------------------------------------
    def image(self, ref: str | Image, *, pull: str | None = None, platform: str | None = None,
              progress: Lines | bool | None = None) -> Image:
        """Resolve ``ref`` ("host", "rootfs:...", "oci:...", "NAME:TAG", a registry name) to an image.

        ``pull`` (missing, always, never) says when a registry is asked; ``platform``
        ("linux/arm64") picks from a multi-platform image (default: this host's).
        ``progress``: a callable gets a few lines per layer a pull downloads (True: on stderr).
        """
        if isinstance(ref, Image):
            return ref
        if pull is None:
            pull = self.pull
        if not isinstance(ref, str) or not ref.strip():
            raise ImageError(f"an image reference must be a non-empty string, not {ref!r}")
        ref = ref.strip()
        if self.image_resolver is not None:
            found = self.image_resolver(ref)
            if isinstance(found, Image):
                return found
            if isinstance(found, str) and found != ref:
                return self.image(found, pull=pull, platform=platform, progress=progress)
        # The host and rootfs directories are named by path, not content: resolving them again
        # in one session gives the same image, so the per-test cost is a dict lookup.
        # Keyed by absolute path: a relative ``rootfs:`` means another directory after a chdir.
        cacheable = ref == "host" or (ref.startswith("rootfs:") and os.path.isdir(ref[len("rootfs:"):]))
        key = ref if ref == "host" else "rootfs:" + os.path.abspath(ref[len("rootfs:"):])
        if cacheable and key in self._image_cache:
            return self._image_cache[key]
        if ref == "host":
            from .images.host import host_image

            image = host_image(self.store)
        else:
            from .images import resolve
            from .images._reference import parse_reference

            if parse_reference(ref).transport in ("store", "docker"):
                image = self._named(ref, pull or "missing", platform, lines_for(progress))
            else:
                image = resolve(self.store, ref, pull=pull, platform=platform)
        if cacheable:
            self._image_cache[key] = image
        return image

    def _named(self, ref: str, pull: str, platform: str | None, lines: Lines | None) -> Image:
        """A name a registry may serve: its registry asked at most once per engine for ``always``,
        and not again after it did not answer at all.

        Otherwise a suite of hundreds of tests would wait for a dead registry (or count against
        its pull rate limit) once per test; one check per session is what ``always`` means here.
        A pull that downloaded anything is announced (see ``announce``).
        """
        from .images import resolve

        key = (ref, platform)
        if pull == "always" and key in self._pulled:
            return self._pulled[key]
        down = self._unreachable.get(key)
        if down is not None:
            if pull != "always":
                with contextlib.suppress(ImageNotFound):  # another process may have pulled it since
                    return resolve(self.store, ref, pull="never", platform=platform)
            raise RegistryError(f"{down}\n  (this session asked once already; it is not asked again)",
                                down.registry, unreachable=True)
        counter = BlobLines(lines, prefix=f"{ref} ")
        start = time.monotonic()
        try:
            image = resolve(self.store, ref, pull=pull, platform=platform, progress=counter)
        except RegistryError as exc:
            if exc.unreachable:
                self._unreachable[key] = exc
            raise
        if counter.blobs and self.announce is not None:
            self.announce(f"pulled {ref}: {counter.blobs} blob(s), {human_size(counter.bytes)} in "
                          f"{time.monotonic() - start:.1f}s")
        if pull == "always":
            self._pulled[key] = image
        return image

    def remove(self, image: Image | str) -> None:
        """Remove ``image`` (an Image, a tag or a digest) from the store, with every tag of it.

        Its layers go at the next :meth:`prune` unless another image uses them.
        """
        ref = image.digest if isinstance(image, Image) else image
        self.store.remove_image(ref)

    def images(self) -> list[Image]:
        """Every image of the store (``minicontainer images``), each with its tags."""
        return self.store.list_images()

    def tag(self, image: Image | str, name: str) -> Image:
        """Give ``image`` (an Image, a tag or a digest) the name ``name`` (``NAME[:TAG]``); the
        image with its tags.  A name that pointed at another image moves, as in Docker."""
        digest = image.digest if isinstance(image, Image) else self.store.resolve_digest(image)
        self.store.tag(name, digest)
        return self.store.load_image(name)

    def push(self, image: Image | str, ref: str, *, progress: Lines | bool | None = None) -> str:
        """Push ``image`` (an Image, a tag or a digest of the store) to the registry name ``ref``
        (``host[:port]/name:tag``); the pushed manifest's digest, which a pull of ``ref`` gets.

        Blobs the repository has are not sent again, those another repository of the same
        registry holds are mounted; credentials and the plain-HTTP rule are the pulls' own.
        ``progress``: a callable gets a few lines per layer it uploads (True: on stderr).
        """
        from .images.registry import push_image

        img = image if isinstance(image, Image) else self.store.load_image(image)
        lines = lines_for(progress)
        counter = BlobLines(lines, prefix=f"{ref} ", verb="uploading")
        start = time.monotonic()
        with self.store.in_use():  # its layers stay while they are read
            result = push_image(self.store, img, ref, progress=counter)
        line = (f"pushed {result.reference}: {result.uploaded} of {result.layers} layer(s) sent"
                f" ({human_size(result.bytes_sent)}) in {time.monotonic() - start:.1f}s, {result.digest}")
        for emit in (self.announce, lines):
            if emit is not None:
                emit(line)
        return result.digest

    def prune(self, *, all: bool = False) -> int:
        """Reclaim what nothing refers to; the bytes freed.

        Layers and blobs no image uses, work left by killed processes, containers' scratch
        space of sessions that died, and images that sessions committed without a tag once
        those sessions ended.  ``all=True`` removes every image and tag first: only what
        running sessions use stays, and the store's owner can delete what is left.
        """

        def clean_runs(run_dir: Path) -> int:
            before = tree_size(run_dir)
            self.runtime.clean_stale()
            return max(0, before - tree_size(run_dir))

        return self.store.gc(run_cleaner=clean_runs, everything=all)

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
        ``$MINICONTAINER_CACHE_TO`` and ``$MINICONTAINER_CACHE_FROM`` (the pytest options set them).
        """
        from .build import build

        return build(self, containerfile, context, tag=tag, build_args=build_args, target=target,
                     network=network, no_cache=no_cache, progress=lines_for(progress), secrets=secrets,
                     cache_to=cache_to, cache_from=cache_from, ssh=ssh)

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
        if name is not None and (not isinstance(name, str) or not name or name in NETWORKS):
            raise ValueError(f"a network name must be a non-empty string other than {', '.join(NETWORKS)},"
                             f" not {name!r}")
        with self._lock:
            if name is not None and name in self._networks:
                net = self._networks[name]
                if net.outbound != outbound:
                    raise ValueError(f"network {name!r} exists with outbound={net.outbound}")
                return net
            rt = self.runtime
            # the lowest free number: a long session makes a network per test, one at a time
            free = sorted(set(range(1, 255)) - {n.index for n in self._networks.values()})
            if not free:
                raise ContainerError("this Engine has 254 networks already: remove some (network.remove()) first")
            index = free[0]
            self._network_count += 1
            name = name or f"network{self._network_count}"
            net = Network(self, name, index, outbound)
            if outbound:
                _slirp4netns()  # the fix now, not at the first member
            rt.make_network(net.id)
            self._networks[name] = net
            return net

    def _remove_network(self, net: Network, closing: bool = False) -> None:
        with self._lock:
            if net.removed:
                return
            members = [c for c in self._containers.values() if net in c._nets]
            if members and not closing:
                raise ContainerError(f"network {net.name!r} still has members ({', '.join(c.id for c in members)}):"
                                     " remove them first")
            net.removed = True
            self._networks.pop(net.name, None)
        if self._runtime is not None:
            self._runtime.remove_network(net.id)

    def _connect(self, net: Network, container: Container, aliases: Sequence[str]) -> str:
        """``net.connect(container)``: one more interface and address for a running member."""
        if net.engine is not self or net.removed:
            raise ValueError(f"{net!r} is not a network of this Engine (removed, or another Engine's)")
        if container.engine is not self or container._removed:
            raise ContainerError(f"container {container.id} is not a container of this Engine (or it is removed)")
        if net in container._nets:
            raise ValueError(f"container {container.id} is on network {net.name!r} already")
        if container._hosts is None:
            raise ContainerError(f"container {container.id} started without a network (network=\"{container.network}\")"
                                 ": only members of a network join more (start it with network=...)")
        names = [check_alias(a) for a in aliases]
        ip = net.allocate()
        try:
            netns = container._rt.network_namespace()
            try:
                join = {"network": net.id, "address": f"{ip}/{net.subnet.prefixlen}",
                        "ifname": f"eth{len(container._nets)}"}
                self.runtime.connect_network(container.id, join, netns)
            finally:
                os.close(netns)
        except BaseException:
            net.release(ip)
            raise
        net.join(container.id, ip, [container.hostname, container.id, *names])
        container._nets.append(net)
        container.ips[net.name] = ip
        self._refresh_hosts(net)
        return ip

    def _refresh_hosts(self, net: Network) -> None:
        """Rewrite the hosts file of every member of ``net`` (each lists all its networks)."""
        with self._lock:
            members = [c for c in self._containers.values() if net in c._nets and c._hosts is not None]
        for c in members:
            with contextlib.suppress(OSError):
                write_hosts(c._hosts, c._nets)  # type: ignore[arg-type]

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
        image, command, env, workdir, user = (options.image, options.command, options.env, options.workdir,
                                              options.user)
        mounts, network, hostname, ports, aliases = (options.mounts, options.network, options.hostname,
                                                     options.ports, options.aliases)
        img = self.image(image)
        net: Network | None = None
        if isinstance(network, Network):
            if network.engine is not self or network.removed:
                raise ValueError(f"{network!r} is not a network of this Engine (removed, or another Engine's)")
            net = network
        elif isinstance(network, str) and network and network not in NETWORKS:
            net = self.network(network)
        elif network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, a Network or a network's name, not {network!r}")
        names = [check_alias(a) for a in (aliases or ())]
        if names and net is None:
            raise ValueError("aliases are names on a network: pass network=engine.network(...) (or a name) too")
        if hostname is not None and net is not None:
            check_alias(hostname)
        mode = ("slirp" if net.outbound else "none") if net is not None else str(network)
        slirp = _slirp4netns() if mode == "slirp" else None
        mount_list = [as_mount(m) for m in (mounts or ())]
        for m in mount_list:
            if not os.path.exists(m.source):
                raise ContainerError(f"mount source {m.source} does not exist on the host")
            if not str(m.target).startswith("/"):
                raise ContainerError(f"mount target {m.target!r} must be an absolute path")
            if os.path.normpath(m.target) == "/":
                raise ContainerError(f"mount {m.source} -> {m.target!r}: the container's root cannot be a mount "
                                     "target (it would hide the image); mount below it, e.g. /data, or make "
                                     f"the directory an image with rootfs:{m.source}")
        cfg = img.config
        main = _main_command(command, cfg.default_command())
        full_env = {"PATH": DEFAULT_PATH, **cfg.env_dict, **checked_env(env)}
        run_user = user if user is not None else (cfg.user or None)
        rt = self.runtime
        self._pin(img, rt)
        spec = self._spec(img, mount_list, mode, hostname)
        if slirp is not None:
            spec["slirp4netns"] = slirp
        ip = None
        hosts: Path | None = None
        if net is not None:
            ip = net.allocate()
            spec["join"] = {"network": net.id, "address": f"{ip}/{net.subnet.prefixlen}"}
            hosts_dir = rt.scratch / "networks"
            hosts_dir.mkdir(exist_ok=True)
            hosts = hosts_dir / f"{os.urandom(6).hex()}.hosts"
            write_hosts(hosts, [net])
            spec["binds"].append({"source": str(hosts), "target": HOSTS, "readonly": True})
        try:
            handle = rt.create(spec)
        except BaseException:
            if net is not None and ip is not None:
                net.release(ip)
            if hosts is not None:
                hosts.unlink(missing_ok=True)
            raise
        name = hostname or handle.id
        if net is not None and ip is not None:
            net.join(handle.id, ip, [name, handle.id, *names])
        full_env.setdefault("HOSTNAME", name)
        container = Container(self, handle, img, command=main, env=full_env, workdir=workdir or cfg.workdir or "/",
                              user=run_user, hostname=name, network=net.name if net is not None else mode,
                              mounts=mount_list)
        container.ip, container.aliases, container._mode = ip, tuple(names), mode
        if net is not None and ip is not None:
            container._nets, container.ips, container._hosts = [net], {net.name: ip}, hosts
        with self._lock:
            self._containers[handle.id] = container
        if net is not None:
            self._refresh_hosts(net)  # every member (this one too) lists the newcomer
        try:
            if run_user is not None:
                self._check_user(container, run_user)
            container._start_main()
            for port in ports or ():
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

    def _spec(self, img: Image, mounts: Sequence[Mount], network: str, hostname: str | None) -> dict[str, Any]:
        """The runtime's description of the container (see ``runtime.mounts``)."""
        overlays = []
        for hdir in img.host_dirs:
            rel = hdir.lstrip("/")
            lowers = [hdir] + [os.path.join(layer, rel) for layer in img.layer_dirs
                               if os.path.isdir(os.path.join(layer, rel))]
            overlays.append({"target": hdir, "lowers": lowers})
        binds = [{"source": os.path.abspath(m.source), "target": m.target, "readonly": m.readonly} for m in mounts]
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

    def _check_user(self, container: Container, user: str) -> None:
        try:
            uid, gid = container._rt.resolve_user(user)
        except OSError as exc:
            raise ContainerError(f"cannot resolve user {user!r} in the image: {exc}") from exc
        idmap = self.runtime.idmap
        if max(uid, gid) > idmap.max_uid:
            raise ContainerError(
                f"user {user!r} (uid {uid}, gid {gid}) of image {container.image} cannot be represented: "
                f"this rootless runtime maps only {idmap.describe()}.\n  fix: give your user a range in "
                "/etc/subuid and /etc/subgid (e.g. `sudo usermod --add-subuids 100000-165535 "
                "--add-subgids 100000-165535 $USER`) and install newuidmap/newgidmap (package uidmap), "
                "or pass user=\"root\"")

    # -- called by containers ---------------------------------------------------------------------
    def _finished(self, container: Container) -> None:
        if self.on_finish is not None:
            self.on_finish(container, container.exit_status)

    def _forget(self, container: Container) -> None:
        with self._lock:
            self._containers.pop(container.id, None)
            self._reserved.discard(container.id)
        for net in container._nets:
            net.leave(container.id)
            self._refresh_hosts(net)
        if container._hosts is not None:
            container._hosts.unlink(missing_ok=True)

    def _commit(self, container: Container, tag: str | None) -> Image:

        tmp = self.store.new_tmp_dir("commit-")
        layer_tmp = tmp / "layer"
        try:
            with container._frozen():
                self.runtime.copy(container.upper_dir, layer_tmp)
            for mountpoint in ("proc", "dev", "sys"):
                p = layer_tmp / mountpoint
                with contextlib.suppress(OSError):
                    if p.is_dir() and not any(p.iterdir()):
                        p.rmdir()
            drop_mount_stubs(layer_tmp, container.image, container.runtime_files)
            base = container.image
            layer_id = self.store.trees.digest(layer_tmp)
            if layer_id in base.layers:
                # The same content already lies lower in this image (a file deleted, then put
                # back): overlayfs refuses one directory twice, so this layer needs its own id.
                layer_id = "sha256:" + hashlib.sha256(f"{layer_id} over {base.digest}".encode()).hexdigest()
            layer_id, layer_dir = self.store.finish_layer(layer_tmp, layer_id)
        finally:
            self.store.discard_tmp(tmp)
        # HOSTNAME is the runtime's, as Docker's is: a committed one would outlive the container
        # and contradict the next container's hostname.
        env = {k: v for k, v in container.env.items()
               if not (k == "HOSTNAME" and v == container.hostname and k not in base.config.env_dict)}
        config = base.config.with_changes(
            env=tuple(env.items()),
            workdir=container.workdir if container.workdir != "/" or base.config.workdir else base.config.workdir,
        )
        digest = "sha256:" + hashlib.sha256(json.dumps(
            {"parent": base.digest, "layer": layer_id, "config": config.to_oci()}, sort_keys=True).encode()
        ).hexdigest()
        image = base.derive(digest=digest, layer=layer_id, layer_dir=str(layer_dir), config=config,
                            tags=(tag,) if tag else (), reference=tag or "")
        # untagged: this session's scratch work, which prune reclaims once the session ended
        self.store.save_image(image, session=None if tag else self.runtime.engine_id)
        if tag:
            self.store.tag(tag, digest)
            image = self.store.load_image(tag)
        return image


class _NamespaceTrees(TreeAccess):
    """Store trees that hold subordinate ids, worked on in the runtime's user namespace.

    Rootless with a range, a layer's files keep their image's owners (uid 1000 inside is a
    subordinate id on the host), which this process can neither give nor, for private
    files and directories, read or delete.  Owners are set there; hashing and removal are
    tried here first (most trees are the user's entirely) and done there when refused.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _call(self, module: str, function: str, *args: Any) -> Any:
        name, engine = f"pytest_minicontainer.{module}", self._engine
        if not engine._closed:
            return engine.runtime.call(name, function, *args)
        rt = Runtime(engine.store.run_dir, engine._idmap_mode)  # the engine has ended: one for this call
        try:
            return rt.call(name, function, *args)
        finally:
            rt.close()

    def apply_owners(self, root: Path, owners: Sequence[Owner]) -> None:
        if self._engine._idmap.kind != "range":
            return  # one id mapped: the files stay the user's (root inside)
        # no namespace on this host: the files stay the user's, as without a range
        with contextlib.suppress(RuntimeUnavailable):
            self._call("store._fs", "apply_owners", str(root), [list(o) for o in owners])

    def digest(self, root: Path) -> str:
        try:
            return super().digest(root)
        except PermissionError:
            return str(self._call("store._treehash", "tree_digest", str(root)))

    def remove(self, path: Path) -> None:
        try:
            super().remove(path)
        except PermissionError as exc:
            try:
                self._call("store._fs", "remove_tree", str(path))
            except MiniContainerError as inner:
                raise StoreError(f"cannot remove {path}: it holds files of subordinate ids ({exc.strerror}) and the "
                                 f"user namespace that maps them is not available: {inner}") from exc

    def call(self, module: str, function: str, *args: Any) -> Any:
        # with a range the owners are right only inside; with one id, only what it cannot read goes there
        if self._engine._idmap.kind != "range":
            try:
                return super().call(module, function, *args)
            except PermissionError:
                pass
        return self._call(module, function, *args)


def _slirp4netns() -> str:
    """The slirp4netns that ``network="slirp"`` needs, or a ContainerError saying how to get it."""
    import shutil

    found = shutil.which("slirp4netns")
    if found is None:
        raise ContainerError(
            'network="slirp" (a private network with outbound access) needs slirp4netns, which is not '
            'on PATH.\n  fix: apt-get install slirp4netns (dnf install slirp4netns), or use network="host" '
            "to share the host's network")
    return found


def _main_command(command: str | Sequence[str] | None, default: list[str] | None) -> list[str] | None:
    """The main process's argv: the image's default for None, none for an empty one."""
    if command is None:
        return default
    return command_argv(command) or None
