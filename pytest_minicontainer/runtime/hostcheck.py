"""Why a host refuses containers, and what to change: shared by errors and ``minicontainer check``.

Each known refusal (Ubuntu's AppArmor restriction of unprivileged user namespaces, a
``max_user_namespaces`` of 0, Debian's ``unprivileged_userns_clone``, seccomp inside Docker,
overlayfs refusing the store's filesystem) is recognised from the failing step, its errno and
the sysctls that cause it, and turned into a :class:`RuntimeUnavailable` whose ``fix`` is the
exact command to run, as bubblewrap and podman do.
"""

from __future__ import annotations

import errno
import os
import platform
from collections.abc import Mapping
from typing import Any

from .. import _sys
from ..errors import ContainerError, RuntimeUnavailable
from .idmap import IdMap

__all__ = ["explain", "explain_container", "explain_idmap", "in_container_manager", "kernel_version", "sysctl",
           "writable_layer_problem"]


def writable_layer_problem(path: str) -> RuntimeUnavailable | None:
    """Why containers' writable layers cannot live below ``path``, or None.

    overlayfs refuses another overlayfs as its upper layer, and that is where a store in the
    home directory of a Docker (or podman) container lives: without this the first container
    fails with a bare "mount overlay: Invalid argument".
    """
    try:
        overlay = _sys.filesystem_type(path) == _sys.OVERLAYFS_MAGIC
    except OSError:
        return None
    if not overlay:
        return None
    inside = in_container_manager()
    return RuntimeUnavailable(
        f"the store's run directory {path} is on an overlayfs{f' (this is a {inside} container)' if inside else ''}, "
        "and overlayfs cannot keep a container's writable layer there",
        "put the store on another filesystem: set MINICONTAINER_STORE (or --minicontainer-store) to a directory "
        "on a volume mounted into this container (docker run -v ...) or on a tmpfs (docker run --tmpfs ...)")


def sysctl(name: str) -> str | None:
    """The value of a sysctl (``kernel.x`` -> /proc/sys/kernel/x), or None when absent."""
    try:
        with open("/proc/sys/" + name.replace(".", "/"), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def kernel_version() -> tuple[int, int]:
    release = platform.release()
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def seccomp_mode() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def in_container_manager() -> str | None:
    """'docker', 'podman', 'kubernetes' or None, from the usual markers."""
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    return None


def _userns_refusal(err: int) -> RuntimeUnavailable | None:
    if err == errno.ENOSPC or sysctl("user.max_user_namespaces") == "0":
        return RuntimeUnavailable(
            "user namespaces are disabled (user.max_user_namespaces is 0)",
            "sudo sysctl -w user.max_user_namespaces=15000 "
            "(and put it in /etc/sysctl.d/ to keep it); inside an existing user namespace, "
            "its own max_user_namespaces must be raised",
        )
    if sysctl("kernel.unprivileged_userns_clone") == "0":
        return RuntimeUnavailable(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1",
        )
    if err == errno.EPERM and seccomp_mode() == 2:
        manager = in_container_manager() or "a container manager"
        return RuntimeUnavailable(
            f"a seccomp filter blocks unshare() (this process runs inside {manager})",
            "run the outer container with --security-opt seccomp=unconfined (or a profile "
            "allowing unshare, mount and pivot_root), or with --privileged",
        )
    return None


def explain(step: str, err: int, detail: str) -> RuntimeUnavailable:
    """The refusal behind a failed start-up ``step`` (``unshare``, ``mapped``...)."""
    found = _userns_refusal(err)
    if found is not None:
        return found
    return RuntimeUnavailable(
        f"creating a user namespace failed at step {step!r}: {detail or os.strerror(err)}",
        "run `minicontainer check` for a diagnosis of this host",
    )


def explain_idmap(idmap: IdMap, err: int, detail: str) -> RuntimeUnavailable:
    """Writing the id maps failed: AppArmor's restriction, or newuidmap's refusal."""
    if sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        return RuntimeUnavailable(
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10 and later)",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or add an AppArmor "
            "profile for this Python that allows `userns,`",
        )
    found = _userns_refusal(err)
    if found is not None:
        return found
    if idmap.kind == "range":
        return RuntimeUnavailable(
            f"newuidmap/newgidmap refused the ranges from /etc/subuid and /etc/subgid: {detail}",
            "check the ranges (`grep $USER /etc/subuid /etc/subgid`) and that newuidmap is setuid "
            "root, or set MINICONTAINER_IDMAP=single to use a single mapping",
        )
    return RuntimeUnavailable(f"the kernel refused the user namespace's id map: {detail}",
                              "run `minicontainer check` for a diagnosis of this host")


def explain_container(answer: Mapping[str, Any], spec: Mapping[str, Any]) -> Exception:
    """A container's set-up failed in the zygote or in pid 1."""
    detail = str(answer.get("error", "unknown error"))
    err = int(answer.get("errno") or 0)
    if answer.get("step") == "namespaces":
        found = _userns_refusal(err)
        if found is not None:
            return found
        if err == errno.EPERM:
            return RuntimeUnavailable(f"creating the container's namespaces was refused: {detail}",
                                      "run `minicontainer check` for a diagnosis of this host")
    if "overlay" in detail and kernel_version() < (5, 11):
        return RuntimeUnavailable(
            f"overlayfs cannot be mounted in a user namespace on kernel {platform.release()}",
            "use Linux 5.11 or newer",
        )
    if "'proc'" in detail and err == errno.EPERM:
        return RuntimeUnavailable(
            "the kernel refuses a new /proc: the visible /proc has parts mounted over it "
            "(typical inside Docker or Kubernetes)",
            "run the outer container with --privileged or with an unmasked /proc "
            "(docker: --security-opt systempaths=unconfined)",
        )
    return ContainerError(f"container set-up failed: {detail}")
