"""The library's side of the runtime: owns a zygote and talks to containers' pid 1.

``Runtime`` is thread-safe: every request is one datagram with a reply socket of its own.
Scratch space lives in ``<run_dir>/<engine id>/``, guarded by an ``flock`` that this process,
the zygote and every container process hold; a directory whose lock can be taken belongs to
an engine that died, and the next engine removes it (``clean_stale``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContainerError, RuntimeUnavailable
from . import hostcheck, idmap, protocol

__all__ = ["ExitWatch", "Runtime", "RuntimeContainer"]

LOCK_NAME = ".lock"
#: Seconds pid 1 gets to answer a shutdown (it takes milliseconds); a pid 1 that is stuck
#: (blocked, stopped) is then killed by the zygote instead, so that no test hangs on it.
SHUTDOWN_TIMEOUT = 10.0


class ExitWatch:
    """The reply socket of an ``exec`` request: first the pid (or why it failed), then the status.

    The first answer is read lazily, so a caller can start reading the command's output
    right after sending the request instead of waiting a round trip for the pid.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.status: int | None = None
        self._pid: int | None = None
        self._error: ContainerError | None = None
        self._terminal: int | None = None
        self._lock = threading.Lock()

    def _read_start(self, timeout: float | None) -> bool:
        """Read the first answer; False when ``timeout`` passed first."""
        if self._pid is not None or self._error is not None:
            return True
        self.sock.settimeout(timeout)
        fds: list[int] = []
        try:
            message, fds = protocol.recv(self.sock)
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:
            message = None
        if fds:
            self._terminal = fds.pop(0)
        for fd in fds:
            os.close(fd)
        if message is None:
            self._error = ContainerError("the container stopped before the command started")
        elif not message.get("ok"):
            self._error = ContainerError(f"cannot start the command: {message.get('error', 'unknown error')}")
        else:
            self._pid = int(message["pid"])
        if self._error is not None:
            self.sock.close()
        return True

    @property
    def pid(self) -> int:
        """The command's pid inside the container (raises ContainerError if it never started)."""
        with self._lock:
            self._read_start(None)
            if self._error is not None:
                raise self._error
            assert self._pid is not None
            return self._pid

    @property
    def terminal(self) -> int:
        """The master of the command's pseudo-terminal (an ``exec`` with ``tty``); the caller closes it."""
        with self._lock:
            self._read_start(None)
            if self._error is not None:
                raise self._error
            if self._terminal is None:
                raise ContainerError("the command has no terminal (exec without tty)")
            fd, self._terminal = self._terminal, None
            return fd

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status; None while it runs after ``timeout``; ContainerError if it never started."""
        with self._lock:
            if self.status is not None:
                return self.status
            if not self._read_start(timeout):
                return None
            if self._error is not None:
                raise self._error
            if self.sock.fileno() < 0:
                return self.status
            self.sock.settimeout(timeout)
            try:
                message, _ = protocol.recv(self.sock)
            except (TimeoutError, BlockingIOError):
                return None  # still running
            except OSError:
                message = None
            self.status = int(message["status"]) if message and "status" in message else -signal.SIGKILL
            self.sock.close()
            return self.status

    def close(self) -> None:
        self.sock.close()
        if self._terminal is not None:
            os.close(self._terminal)
            self._terminal = None


@dataclass
class RuntimeContainer:
    """A running container as the runtime knows it: its id, scratch dir and pid 1's socket."""

    id: str
    scratch: Path
    ctl: socket.socket
    runtime: Runtime
    alive: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _watches: list[ExitWatch] = field(default_factory=list)

    def request(
        self, message: dict[str, Any], fds: Sequence[int] = ()
    ) -> tuple[dict[str, Any], list[int], socket.socket]:
        if not self.alive:
            raise ContainerError(f"container {self.id} is stopped")
        try:
            answer, got, sock = protocol.call(self.ctl, message, fds)
        except OSError as exc:
            raise ContainerError(f"container {self.id} does not answer (is it stopped?): {exc}") from exc
        if answer is None:
            sock.close()
            raise ContainerError(f"container {self.id} is stopped")
        if not answer.get("ok"):
            sock.close()
            for fd in got:
                os.close(fd)
            err = answer.get("errno") or 0
            if err:  # the text without errno and path (the caller names its own path), when pid 1 sent it
                raise OSError(err, answer.get("strerror") or answer.get("error", "failed"))
            raise ContainerError(str(answer.get("error", "request failed")))
        return answer, got, sock

    def exec(self, argv: Sequence[str], env: dict[str, str], cwd: str, user: str | None,
             stdio: Sequence[int], tty: tuple[int, int] | None = None) -> ExitWatch:
        """Start ``argv``; with ``tty`` (rows, columns) on a new pseudo-terminal instead of
        ``stdio`` (``ExitWatch.terminal`` is its master)."""
        if not self.alive:
            raise ContainerError(f"container {self.id} is stopped")
        mine, theirs = protocol.reply_pair()
        message: dict[str, Any] = {"op": "exec", "argv": list(argv), "env": env, "cwd": cwd, "user": user}
        if tty is not None:
            message["tty"] = list(tty)
            stdio = ()
        try:
            protocol.send(self.ctl, message, [theirs.fileno(), *stdio])
        except OSError as exc:
            mine.close()
            raise ContainerError(f"container {self.id} does not answer (is it stopped?): {exc}") from exc
        finally:
            theirs.close()
        watch = ExitWatch(mine)
        with self._lock:
            self._watches = [w for w in self._watches if w.status is None]
            self._watches.append(watch)
        return watch

    def kill(self, pid: int, sig: int, group: bool = True) -> None:
        with contextlib.suppress(ContainerError):
            _a, _f, sock = self.request({"op": "kill", "pid": pid, "signal": int(sig), "group": group})
            sock.close()

    def freeze(self, stop: bool) -> None:
        """Stop (or continue) every process of the container; see ``init._freeze``."""
        _a, _f, sock = self.request({"op": "freeze", "stop": stop})
        sock.close()

    def network_namespace(self) -> int:
        """The container's network namespace, opened by its pid 1 (the caller closes it)."""
        _a, fds, sock = self.request({"op": "netns"})
        sock.close()
        return fds[0]

    def open(self, path: str, flags: int, mode: int = 0o644, mkdirs: bool = False) -> int:
        _a, fds, sock = self.request({"op": "open", "path": path, "flags": flags, "mode": mode, "mkdirs": mkdirs})
        sock.close()
        return fds[0]

    def socket(self, family: str = "inet") -> socket.socket:
        """A new, unconnected TCP socket in the container's network namespace."""
        _a, fds, sock = self.request({"op": "socket", "family": family})
        sock.close()
        return socket.socket(fileno=fds[0])

    def resolve_user(self, user: str) -> tuple[int, int]:
        """(uid, gid) of ``user`` as the container's /etc/passwd and /etc/group define it."""
        answer, _f, sock = self.request({"op": "user", "user": user})
        sock.close()
        return int(answer["uid"]), int(answer["gid"])

    def destroy(self, remove: bool) -> None:
        """Kill every process of the container; with ``remove`` also delete its scratch dir.

        Pid 1 kills and reaps everything in the pid namespace and answers before it exits
        itself, so this returns as soon as no process the container ran is left; tearing
        down the namespaces and mounts (several ms) then happens off the caller's path, and
        the zygote removes the scratch dir when it reaps pid 1 (its exit status says so).
        """
        with self._lock:
            answered = False
            if self.alive:
                self.alive = False
                with contextlib.suppress(OSError):  # TimeoutError too: pid 1 is stuck, the zygote kills it
                    answer, _f, sock = protocol.call(self.ctl, {"op": "shutdown", "remove": remove},
                                                     timeout=SHUTDOWN_TIMEOUT)
                    sock.close()
                    answered = bool(answer and answer.get("ok"))
                self.ctl.close()
            if not answered:  # pid 1 did not take care of it: the zygote kills it and removes
                self.runtime.release(self.id, [str(self.scratch)] if remove else [])
            for watch in self._watches:  # each learns its status, or EOF: -SIGKILL
                with contextlib.suppress(ContainerError):
                    watch.wait(5)
            self._watches.clear()


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
        protocol.send(self._ctl, {"op": "mapped", "host_root": idmap.is_host_root(self.idmap)})
        self._read_start("ready")

    def _read_start(self, step: str) -> dict[str, Any]:
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
    def create(self, spec: dict[str, Any]) -> RuntimeContainer:
        """Start a container described by ``spec`` (see ``mounts`` for its keys).

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
            answer, _fds, sock = protocol.call(self._ctl, {"op": "create", "spec": spec}, [theirs.fileno()])
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
        self._simple({"op": "destroy", "id": cid, "remove": list(remove)})

    def release(self, cid: str, remove: Sequence[str]) -> None:
        """Make sure container ``cid`` ends; remove ``remove`` once it has (no waiting)."""
        self._post({"op": "destroy", "id": cid, "remove": list(remove)})

    def _post(self, message: dict[str, Any]) -> None:
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
        message = {"op": "remove", "paths": [str(p) for p in paths], "now": now, "id": cid}
        if now:
            self._simple(message)
        else:
            self._post(message)

    def copy(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        """Copy a tree (a writable layer) keeping owners, xattrs and whiteouts."""
        self._simple({"op": "copy", "source": str(source), "target": str(target)})

    def call(self, module: str, function: str, *args: Any) -> Any:
        """``module.function(*args)`` run inside the user namespace (in a child of the zygote).

        For the store's trees whose files belong to ids only the namespace maps.  Arguments
        and result travel as JSON; an OSError there is raised here as OSError.
        """
        try:
            answer, _fds, sock = protocol.call(self._ctl, {"op": "call", "module": module, "function": function,
                                                          "args": list(args)})
        except OSError as exc:
            raise ContainerError(f"the runtime helper is gone: {exc}") from exc
        sock.close()
        if answer is None:
            raise ContainerError(f"{module}.{function} died in the user namespace")
        if not answer.get("ok"):
            if answer.get("errno"):
                raise OSError(int(answer["errno"]), str(answer.get("error")))
            raise ContainerError(f"{module}.{function} failed in the user namespace: {answer.get('error')}")
        return answer.get("result")

    def make_network(self, nid: str) -> None:
        """A private network (a namespace with a bridge) that ``create`` specs may ``join``."""
        self._simple({"op": "network", "id": nid})

    def connect_network(self, cid: str, join: dict[str, Any], netns: int) -> None:
        """Container ``cid`` (its network namespace open as ``netns``) joins one more network
        (``join``: network, address, ifname)."""
        self._simple({"op": "connect", "id": cid, "join": join}, [netns])

    def remove_network(self, nid: str) -> None:
        self._simple({"op": "network_remove", "id": nid})

    def _simple(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        if self._closed:
            return
        try:
            answer, _fds, sock = protocol.call(self._ctl, message, fds)
        except OSError as exc:
            raise ContainerError(f"the runtime helper is gone: {exc}") from exc
        sock.close()
        if answer is None:
            raise ContainerError("the runtime helper exited")
        if not answer.get("ok"):
            raise ContainerError(f"{message['op']} failed: {answer.get('error')}")

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
