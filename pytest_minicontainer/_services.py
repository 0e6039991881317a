"""A container's services: connect to its ports, publish them on the host, wait until ready.

Sockets come from the container's pid 1, created inside its network namespace; ``network``
(the forwarders) and ``wait`` (the readiness strategies) get them through :meth:`socket`,
never through the container's internals.
"""

from __future__ import annotations

import re
import time
from socket import socket as Socket

from ._processes import Processes
from .errors import ContainerError
from .network import LOOPBACKS, Direct, Forwarder
from .wait import log
from .wait import port as port_open

__all__ = ["Services"]


class Services(Processes):
    """The network part of a Container."""

    def socket(self, family: str = "inet") -> Socket:
        """An unconnected socket made inside the container's network namespace (``"inet"`` or
        ``"inet6"``): what ``connect``, ``publish`` and the ``wait`` strategies connect with."""
        return self._rt.socket(family)

    def connect(self, port: int, timeout: float = 10.0, host: str | None = None) -> Socket:
        """A TCP socket connected to ``host:port`` *inside* the container's network namespace.

        Without ``host``: 127.0.0.1, then ::1 (a server told to listen on "localhost" often
        ends up on ::1 alone; ``publish`` reaches both too).  Retries while the port refuses
        (the server may still be starting) until ``timeout``.
        """
        hosts = (host,) if host else LOOPBACKS
        deadline = time.monotonic() + timeout
        while True:
            for h in hosts:
                sock = self.socket("inet6" if ":" in h else "inet")
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    sock.connect((h, port))
                except OSError as exc:
                    sock.close()
                    error = exc
                    continue
                sock.settimeout(None)
                return sock
            if time.monotonic() >= deadline:
                raise ContainerError(
                    f"cannot connect to {' or '.join(hosts)} port {port} in container {self.id} within {timeout:g}s: "
                    f"{error.strerror or error}; main process: {self._main_state()}") from error
            time.sleep(0.02)

    def publish(self, port: int) -> tuple[str, int]:
        """Forward a free port on 127.0.0.1 to ``port`` in the container; returns (host, port).

        Publishing the same port twice returns the same address.  A container on the host's
        network needs no forwarder: its port already is the host's.
        """
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer between 1 and 65535, not {port!r}")
        with self._lock:
            if not self._rt.alive:  # also for a port published before: its address is dead now
                raise ContainerError(f"cannot publish port {port}: container {self.id} is stopped")
            existing = self._forwarders.get(port)
            if existing is not None:
                address: tuple[str, int] = existing.address
                return address
            forwarder = Direct(port) if self.network == "host" else Forwarder(self.socket, port, name=self.id)
            self._forwarders[port] = forwarder
            return forwarder.address

    @property
    def ports(self) -> dict[int, tuple[str, int]]:
        """The published ports: container port -> (host, port) on the host."""
        return {p: f.address for p, f in self._forwarders.items()}

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        """Block until ``port`` accepts connections inside the container (see ``wait.port``).

        Raises WaitTimeout (with the main process's state and last log lines) otherwise.
        """
        port_open(port).wait(self, timeout)

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> None:
        """Block until the main process's output matches the regex ``pattern`` (see ``wait.log``)."""
        log(pattern).wait(self, timeout)
