"""The shapes of everything the runtime's processes say to each other, as TypedDicts.

One leaf module (it imports nothing of the package) so that the library's client, the
zygote, every container's pid 1 and the network helper agree on one description of each
message, and mypy checks both ends.  The wire format is JSON (see :mod:`.protocol`): what
arrives is checked only as far as the handler reads it, so a handler indexes the keys it
needs and a malformed request fails there, answered with an error (see :mod:`.server`).

Optional keys sit in a ``total=False`` subclass of the required ones (``NotRequired`` is
Python 3.11).  Every request carries ``op``; every answer carries ``ok`` except an exec's
second answer, its exit status.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "BindSpec",
    "CallReply",
    "CallRequest",
    "ConnectRequest",
    "ContainerSpec",
    "CopyRequest",
    "CreateRequest",
    "DestroyRequest",
    "ErrorReply",
    "ExecRequest",
    "ExitStatus",
    "FreezeRequest",
    "Handover",
    "JoinSpec",
    "KillRequest",
    "MappedRequest",
    "NetnsRequest",
    "NetworkRemoveRequest",
    "NetworkRequest",
    "OkReply",
    "OpenRequest",
    "OverlaySpec",
    "PidReply",
    "RemoveRequest",
    "ShutdownRequest",
    "SocketRequest",
    "StartReply",
    "StartedReply",
    "UserReply",
    "UserRequest",
    "WireDrop",
    "WireJoin",
    "WireMake",
]


# -- the container spec (written by the library's Engine, read by ``mounts`` and pid 1) ---------
class OverlaySpec(TypedDict):
    """A host directory's own overlay (the ``host`` image): ``target`` over ``lowers``, bottom first."""

    target: str
    lowers: list[str]


class _BindRequired(TypedDict):
    source: str
    target: str


class BindSpec(_BindRequired, total=False):
    """A bind mount; ``optional``: left out where the image cannot hold its mount point."""

    readonly: bool
    optional: bool


class _JoinRequired(TypedDict):
    network: str
    address: str  # with its prefix length: "10.89.0.2/24"


class JoinSpec(_JoinRequired, total=False):
    """A network (made by ``network``) the container joins, with the address the library chose."""

    ifname: str


class _SpecRequired(TypedDict):
    lowers: list[str]


class ContainerSpec(_SpecRequired, total=False):
    """What a container is made of (see :mod:`.mounts`), never where its writable layer lives."""

    overlays: list[OverlaySpec]
    binds: list[BindSpec]
    resolv: str | None  # "slirp": a resolver file pointing at slirp4netns
    hostname: str | None
    network: str  # "none" (default), "host", "slirp", or a private network's kind
    slirp4netns: str  # the binary, with network="slirp"
    join: JoinSpec


# -- requests to the zygote ----------------------------------------------------------------------
class MappedRequest(TypedDict):
    """Start-up: the id maps are written (``host_root``: root inside is the host's root)."""

    op: Literal["mapped"]
    host_root: bool


class CreateRequest(TypedDict):
    op: Literal["create"]
    spec: ContainerSpec


class _DestroyRequired(TypedDict):
    op: Literal["destroy"]
    id: str


class DestroyRequest(_DestroyRequired, total=False):
    remove: list[str]  # scratch dirs to dispose of once the container's pid 1 is reaped


class _RemoveRequired(TypedDict):
    op: Literal["remove"]
    paths: list[str]


class RemoveRequest(_RemoveRequired, total=False):
    now: bool
    id: str | None  # not before this container has ended


class CopyRequest(TypedDict):
    op: Literal["copy"]
    source: str
    target: str


class _CallRequired(TypedDict):
    op: Literal["call"]
    module: str
    function: str


class CallRequest(_CallRequired, total=False):
    args: list[Any]  # JSON values, whatever the function takes


class NetworkRequest(TypedDict):
    op: Literal["network"]
    id: str


class NetworkRemoveRequest(TypedDict):
    op: Literal["network_remove"]
    id: str


class ConnectRequest(TypedDict):
    """A running container (its network namespace attached) joins one more network."""

    op: Literal["connect"]
    id: str
    join: JoinSpec


class Handover(TypedDict):
    """The zygote to a spare's pid 1: its container's spec (and the reply and control sockets)."""

    spec: ContainerSpec
    key: str | None  # the template the spare prepared, to be checked against what it made


# -- requests to a container's pid 1 --------------------------------------------------------------
class _ExecRequired(TypedDict):
    op: Literal["exec"]
    argv: list[str]


class ExecRequest(_ExecRequired, total=False):
    env: dict[str, str]
    cwd: str
    user: str | None
    tty: list[int]  # [rows, columns]: on a new pseudo-terminal


class _KillRequired(TypedDict):
    op: Literal["kill"]
    pid: int
    signal: int


class KillRequest(_KillRequired, total=False):
    group: bool


class FreezeRequest(TypedDict):
    op: Literal["freeze"]
    stop: bool


class _UserRequired(TypedDict):
    op: Literal["user"]


class UserRequest(_UserRequired, total=False):
    user: str | None


class _SocketRequired(TypedDict):
    op: Literal["socket"]


class SocketRequest(_SocketRequired, total=False):
    family: str  # "inet" or "inet6"


class NetnsRequest(TypedDict):
    op: Literal["netns"]


class _OpenRequired(TypedDict):
    op: Literal["open"]
    path: str


class OpenRequest(_OpenRequired, total=False):
    flags: int
    mode: int
    mkdirs: bool


class _ShutdownRequired(TypedDict):
    op: Literal["shutdown"]


class ShutdownRequest(_ShutdownRequired, total=False):
    remove: bool  # pid 1 exits with REMOVE_SCRATCH: the zygote disposes of the scratch dir


# -- requests to the zygote's network helper ----------------------------------------------------
class WireMake(TypedDict):
    op: Literal["make"]
    id: str


class WireDrop(TypedDict):
    op: Literal["drop"]
    id: str


class _WireJoinRequired(TypedDict):
    op: Literal["join"]
    id: str
    veth: str
    address: str


class WireJoin(_WireJoinRequired, total=False):
    ifname: str


# -- answers -------------------------------------------------------------------------------------
class OkReply(TypedDict):
    ok: Literal[True]


class _ErrorRequired(TypedDict):
    ok: Literal[False]
    error: str


class ErrorReply(_ErrorRequired, total=False):
    """What went wrong (built by ``protocol.error_reply``, decoded by ``protocol.raise_for``)."""

    errno: int
    strerror: str  # the text without errno and path (the caller names its own path)
    type: str  # the exception's class name
    step: str  # where a start failed: "unshare", "mapped", "namespaces", "network"
    id: str  # a container that failed to start: its id and scratch dir, to clean up
    scratch: str


class _StartRequired(TypedDict):
    ok: Literal[True]
    step: str


class StartReply(_StartRequired, total=False):
    """The zygote's start-up steps: "unshared" (with its pid, to write the maps for), "ready"."""

    pid: int


class StartedReply(TypedDict):
    """Pid 1 of a new container runs: its id and scratch dir."""

    ok: Literal[True]
    id: str
    scratch: str


class PidReply(TypedDict):
    """An exec's first answer (a terminal's master attached with ``tty``)."""

    ok: Literal[True]
    pid: int


class ExitStatus(TypedDict):
    """An exec's second answer: its return code (negative: the signal that ended it)."""

    status: int


class UserReply(TypedDict):
    ok: Literal[True]
    uid: int
    gid: int
    groups: list[int]
    home: str | None


class CallReply(TypedDict):
    ok: Literal[True]
    result: Any  # whatever JSON the function returned
