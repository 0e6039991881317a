"""network="slirp": outbound access for a container through slirp4netns, started by the zygote.

slirp4netns runs in the zygote's user namespace, which owns the container's network
namespace (so it may enter it), and creates ``tap0`` (10.0.2.100/24, gateway 10.0.2.2, which
does not lead to the host's loopback, DNS 10.0.2.3).  It exits when the write end of its exit
pipe closes: when the container's pid 1 is reaped, or when the zygote dies for any reason.
Only process plumbing here (a fake binary stands in for it in the unit tests).
"""

from __future__ import annotations

import contextlib
import os
import select

__all__ = ["SlirpFailed", "start"]

#: Seconds slirp4netns gets to say it is ready.
READY_TIMEOUT = 10


class SlirpFailed(Exception):
    """network="slirp" could not be set up for a container (the message says why)."""


def start(init: int, binary: str, log_dir: str) -> tuple[int, int]:
    """Give the network namespace of process ``init`` (a container's pid 1) outbound access.

    Returns slirp4netns's pid and the write end of its exit pipe (close it to stop it); its
    output goes to ``log_dir/slirp4netns-<init>.log``, whose last lines explain a failure.
    """
    if not os.path.exists(f"/proc/{init}/ns/net"):
        raise SlirpFailed("the container exited before its network was set up")
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    try:
        os.set_inheritable(ready_w, True)
        os.set_inheritable(exit_r, True)
        # --disable-host-loopback: 10.0.2.2 would otherwise be the host's 127.0.0.1, and every
        # service listening there only for local users (databases, agents, a CI runner's
        # API) would answer the container.  Docker's networks do not reach it either.
        # --netns-type=path: join only the network namespace, staying in this user namespace
        # (which owns it); pid 1 itself may have moved into a nested one (init._lock_mounts).
        argv = [binary, "--configure", "--mtu=65520", "--disable-host-loopback", f"--ready-fd={ready_w}",
                f"--exit-fd={exit_r}", "--netns-type=path", f"/proc/{init}/ns/net", "tap0"]
        log_path = os.path.join(log_dir, f"slirp4netns-{init}.log")
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            spid = os.posix_spawn(binary, argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)])
        except OSError as exc:
            raise SlirpFailed(f"cannot start {binary}: {exc}") from None
        finally:
            os.close(log)
        os.close(ready_w)
        ready_w = -1
        ok = bool(select.select([ready_r], [], [], READY_TIMEOUT)[0]) and os.read(ready_r, 1) == b"1"
    except BaseException:
        os.close(exit_w)
        raise
    finally:
        for fd in (ready_r, ready_w, exit_r):
            if fd >= 0:
                os.close(fd)
    if not ok:
        os.close(exit_w)  # it exits, and the zygote's reap collects it
        raise SlirpFailed(_explain(log_path))
    return spid, exit_w


def _explain(log_path: str) -> str:
    """Why slirp4netns did not get ready, from the last lines it wrote (and the fix we know)."""
    said: list[str] = []
    with contextlib.suppress(OSError), open(log_path, errors="replace") as f:
        said = [line.strip() for line in f if line.strip()][-3:]
    hint = ""
    if any("/dev/net/tun" in line for line in said):
        hint = ("\n  fix: slirp4netns needs read-write access to /dev/net/tun (most distributions' udev "
                "rules make it mode 0666: chmod 0666 /dev/net/tun), or use network=\"host\"")
    return "slirp4netns could not give the container a network: " + (" | ".join(said) or "it said nothing") + hint
