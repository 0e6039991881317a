"""The library's side of the runtime: owns a zygote and talks to containers' pid 1.

``Runtime`` is thread-safe: every request is one datagram with a reply socket of its own.
Scratch space lives in ``<run_dir>/<engine id>/``, guarded by an ``flock`` that this process,
the zygote and every container process hold; a directory whose lock can be taken belongs to
an engine that died, and the next engine removes it (``clean_stale``).  The containers it
makes are :class:`.handle.RuntimeContainer` objects (importable from here too).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ContainerError, RuntimeUnavailable
from . import hostcheck, idmap, protocol
from .handle import SHUTDOWN_TIMEOUT, ExitWatch, RuntimeContainer
from .messages import (
    CallRequest,
    ConnectRequest,
    ContainerSpec,
    CopyRequest,
    CreateRequest,
    DestroyRequest,
    JoinSpec,
    MappedRequest,
    NetworkRemoveRequest,
    NetworkRequest,
    RemoveRequest,
)

__all__ = ["SHUTDOWN_TIMEOUT", "ExitWatch", "Runtime", "RuntimeContainer"]

LOCK_NAME = ".lock"


class Runtime:
    """One zygote, one user namespace, many containers."""

    def __init__(self, run_dir: Path, idmap_mode: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.engine_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.scratch = self.run_dir / self.engine_id
        self.scratch.mkdir()
        self._lock_fd = os.open(self.scratch / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.idmap = idmap.choose(idmap_mode)
        self._closed = False
        # Checked at the first container, not here: the store also runs its own work (owners,
        # removal) in this namespace, and that works wherever it lives.
        self._layers_checked = False
        self._start_zygote()

    # -- start ------------------------------------------------------------------------------
    def _start_zygote(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctl = mine
        log = open(self.scratch / "zygote.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE_START, _PACKAGE_ROOT, str(theirs.fileno()), str(self.scratch)],
                pass_fds=[theirs.fileno(), self._lock_fd], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=_zygote_env(),
            )
        finally:
            theirs.close()
            log.close()
        try:
            self._handshake()
        except BaseException:
            self._ctl.close()
            self._proc.kill()
            self._proc.wait()
            self._release()
            raise

    def _handshake(self) -> None:
        message = self._read_start("unshared")
        pid = int(message["pid"])
        try:
            idmap.write(pid, self.idmap)
        except subprocess.CalledProcessError as exc:
            raise hostcheck.explain_idmap(self.idmap, exc.returncode, (exc.stderr or "").strip()) from None
        except OSError as exc:
            raise hostcheck.explain_idmap(self.idmap, exc.errno or 0, str(exc)) from None
        mapped: MappedRequest = {"op": "mapped", "host_root": idmap.is_host_root(self.idmap)}
        protocol.send(self._ctl, mapped)
        self._read_start("ready")

    def _read_start(self, step: str) -> Mapping[str, Any]:
        """The zygote's answer for start-up ``step``; its failures explained (see ``hostcheck``)."""
        self._ctl.settimeout(30)
        try:
            message, _ = protocol.recv(self._ctl)
        except OSError as exc:
            raise RuntimeUnavailable(f"the runtime helper did not start ({exc})",
                                     f"see {self.scratch / 'zygote.log'}") from None
        finally:
            self._ctl.settimeout(None)
        if message is None:
            log = (self.scratch / "zygote.log").read_text(errors="replace")[-2000:]
            raise RuntimeUnavailable(f"the runtime helper exited during start-up:\n{log}",
                                     "run `minicontainer check` for a diagnosis")
        if not message.get("ok"):
            raise hostcheck.explain(str(message.get("step")), int(message.get("errno") or 0),
                                    str(message.get("error", "")))
        if message.get("step") != step:
            raise RuntimeUnavailable(f"unexpected answer from the runtime helper: {message}", "report this bug")
        return message

    # -- containers -------------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> RuntimeContainer:
        """Start a container described by ``spec`` (a ``messages.ContainerSpec``, see ``mounts``).

        The runtime picks the container's id and scratch directory (a spare container has
        made its own before it was asked for); pid 1's answer names them.
        """
        if not self._layers_checked:
            problem = hostcheck.writable_layer_problem(str(self.run_dir))
            if problem is not None:
                raise problem
            self._layers_checked = True
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            request: CreateRequest = {"op": "create", "spec": spec}
            answer, _fds, sock = protocol.call(self._ctl, request, [theirs.fileno()])
        except OSError as exc:
            mine.close()
            raise ContainerError(f"the runtime helper is gone: {exc}") from exc
        finally:
            theirs.close()
        sock.close()
        if answer is None or not answer.get("ok"):
            mine.close()
            if answer and answer.get("id"):
                self.destroy(str(answer["id"]), [str(answer["scratch"])])
            raise hostcheck.explain_container(answer or {"error": "container exited during set-up"}, spec)
        return RuntimeContainer(str(answer["id"]), Path(answer["scratch"]), mine, self)

    def destroy(self, cid: str, remove: Sequence[str]) -> None:
        """Wait until container ``cid``'s pid 1 has been reaped; then remove ``remove``."""
        request: DestroyRequest = {"op": "destroy", "id": cid, "remove": list(remove)}
        self._simple(request)

    def release(self, cid: str, remove: Sequence[str]) -> None:
        """Make sure container ``cid`` ends; remove ``remove`` once it has (no waiting)."""
        request: DestroyRequest = {"op": "destroy", "id": cid, "remove": list(remove)}
        self._post(request)

    def _post(self, message: DestroyRequest | RemoveRequest) -> None:
        """Send a request without waiting for its answer (the zygote handles them in order)."""
        if self._closed:
            return
        mine, theirs = protocol.reply_pair()
        try:
            protocol.send(self._ctl, message, [theirs.fileno()])
        except OSError as exc:
            raise ContainerError(f"the runtime helper is gone: {exc}") from exc
        finally:
            theirs.close()
            mine.close()

    def remove(self, paths: Sequence[str | os.PathLike[str]], now: bool = False, cid: str | None = None) -> None:
        """Remove trees inside the user namespace (they may hold ids only it maps).

        By default the zygote deletes them when idle, off the test's path (and not before
        container ``cid`` has fully ended); ``now`` waits for the deletion.
        """
        message: RemoveRequest = {"op": "remove", "paths": [str(p) for p in paths], "now": now, "id": cid}
        if now:
            self._simple(message)
        else:
            self._post(message)

    def copy(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        """Copy a tree (a writable layer) keeping owners, xattrs and whiteouts."""
        request: CopyRequest = {"op": "copy", "source": str(source), "target": str(target)}
        self._simple(request)

    def call(self, module: str, function: str, *args: Any) -> Any:
        """``module.function(*args)`` run inside the user namespace (in a child of the zygote).

        For the store's trees whose files belong to ids only the namespace maps.  Arguments
        and result travel as JSON; an OSError there is raised here as OSError.
        """
        try:
            request: CallRequest = {"op": "call", "module": module, "function": function, "args": list(args)}
            answer, _fds, sock = protocol.call(self._ctl, request)
        except OSError as exc:
            raise ContainerError(f"the runtime helper is gone: {exc}") from exc
        sock.close()
        return protocol.raise_for(answer, f"{module}.{function} died in the user namespace",
                                  f"{module}.{function} failed in the user namespace: ").get("result")

    def make_network(self, nid: str) -> None:
        """A private network (a namespace with a bridge) that ``create`` specs may ``join``."""
        request: NetworkRequest = {"op": "network", "id": nid}
        self._simple(request)

    def connect_network(self, cid: str, join: JoinSpec, netns: int) -> None:
        """Container ``cid`` (its network namespace open as ``netns``) joins one more network
        (``join``: network, address, ifname)."""
        request: ConnectRequest = {"op": "connect", "id": cid, "join": join}
        self._simple(request, [netns])

    def remove_network(self, nid: str) -> None:
        request: NetworkRemoveRequest = {"op": "network_remove", "id": nid}
        self._simple(request)

    def _simple(self, message: Mapping[str, object], fds: Sequence[int] = ()) -> None:
        """Send a request, wait for its answer; ContainerError naming the op if it failed."""
        if self._closed:
            return
        try:
            answer, _fds, sock = protocol.call(self._ctl, message, fds)
        except OSError as exc:
            raise ContainerError(f"the runtime helper is gone: {exc}") from exc
        sock.close()
        protocol.raise_for(answer, "the runtime helper exited", f"{message['op']} failed: ", oserror=False)

    def clean_stale(self) -> list[Path]:
        """Remove scratch dirs of engines whose processes are all gone (crash, SIGKILL)."""
        removed: list[Path] = []
        for entry in self.run_dir.iterdir():
            if entry == self.scratch or not entry.is_dir():
                continue
            lock = entry / LOCK_NAME
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
            except OSError:
                continue
            try:
                if fd >= 0:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError as exc:
                        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                            continue  # alive
                        raise
                self.remove([entry], now=True)
                removed.append(entry)
            finally:
                if fd >= 0:
                    os.close(fd)
        return removed

    # -- end ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every container, stop the zygote, remove the scratch space."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._ctl.shutdown(socket.SHUT_RDWR)
        self._ctl.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._release()

    def _release(self) -> None:
        from .trees import remove_tree

        with contextlib.suppress(OSError):
            remove_tree(str(self.scratch))
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    @property
    def zygote_pid(self) -> int:
        return self._proc.pid


# The zygote must import this very package, even when the working directory or PYTHONPATH
# holds another copy (``python -m`` would put the working directory first).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_ZYGOTE_START = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                 "from pytest_minicontainer.runtime.zygote import main; sys.exit(main(sys.argv[1:]))")


# What the zygote and every pid 1 may inherit of the caller's environment: what the
# interpreter needs to start (and the locale it prints in), nothing else.  The rest (CI
# tokens, cloud credentials, registry passwords) has no business in processes that serve
# containers: an image's file request or a bug there must not be able to reveal it.
_KEPT_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME",
             "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONNOUSERSITE",
             "PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONFAULTHANDLER")


def _zygote_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _KEPT_ENV or k.startswith("LC_")}
