"""The only module that talks to the kernel directly.

Everything here is a thin, typed wrapper over a Linux system call made through ctypes
(``clone``, ``mount``, ``umount2``, ``pivot_root``, ``unshare``, ``sethostname``, ``prctl``)
or an ioctl.  Keeping them in one place means the rest of the runtime is plain Python that can
be read (and reviewed) without knowing ctypes, and that a failing call always raises the
same exception type, :class:`SysError`, carrying the call, its arguments and ``errno``.
Routing (links, addresses) is spoken over netlink sockets by :mod:`._netlink`, the one other
module that addresses the kernel directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import fcntl
import os
import signal
import socket
import struct
from collections.abc import Iterator

__all__ = [
    "CAP_SYS_ADMIN",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "MNT_DETACH",
    "MS_BIND",
    "MS_MOVE",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "SysError",
    "bring_up_loopback",
    "clone",
    "deny_shared_kernel_calls",
    "drop_capability",
    "filesystem_type",
    "interface_index",
    "mknod_whiteout",
    "mount",
    "open_terminal",
    "pivot_root",
    "raw_terminal",
    "set_child_subreaper",
    "set_controlling_terminal",
    "set_dumpable",
    "set_parent_death_signal",
    "set_window_size",
    "sethostname",
    "terminal_peer",
    "umount",
    "unread_input",
    "unshare",
    "window_size",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_SET_CHILD_SUBREAPER = 36
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

# CDLL(None): the symbols already loaded into this process, libc's among them.  Avoids
# ctypes.util.find_library, which runs ldconfig and imports half the standard library.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
_MACHINE = os.uname().machine
# Numbers of the two calls libc has no wrapper for.  An architecture not listed gets none:
# guessing x86_64's would call some other system call with these arguments.
_SYSCALL_NUMBERS = {
    "pivot_root": {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217},
    "clone": {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120, "s390x": 120},
}
_SYS_PIVOT_ROOT = _SYSCALL_NUMBERS["pivot_root"].get(_MACHINE)
_SYS_CLONE = _SYSCALL_NUMBERS["clone"].get(_MACHINE)


def _number(call: str, number: int | None) -> int:
    """The system call's number on this machine, or a SysError (ENOSYS) naming the architecture."""
    if number is None:
        known = ", ".join(sorted(_SYSCALL_NUMBERS[call]))
        raise SysError(_errno.ENOSYS, call, f"its number on {_MACHINE} is not known to this library (known: {known})")
    return number
# clone(2) through a PyDLL: the interpreter lock stays held across the call, so the child
# resumes exactly where the parent was, as after os.fork().
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long


class SysError(OSError):
    """A system call failed; ``call`` names it and ``detail`` its arguments."""

    def __init__(self, err: int, call: str, detail: str = "") -> None:
        super().__init__(err, f"{call}({detail}): {os.strerror(err)}")
        self.call = call
        self.detail = detail


def _check(result: int, call: str, *args: object) -> None:
    # the message is only formatted on failure: these calls are on every container's path
    if result != 0:
        raise SysError(ctypes.get_errno() or _errno.EIO, call, ", ".join(repr(a) for a in args))


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def clone(flags: int) -> int:
    """``fork()`` straight into new namespaces: ``clone(flags | SIGCHLD)`` with no new stack.

    Why not ``os.fork()`` then ``unshare()``: a new pid namespace only applies to the
    caller's *children*, so that path costs a second fork of this Python process per
    container.  Why not the interpreter's fork hooks (``PyOS_AfterFork_Child``, which
    ``os.fork()`` runs): they reset thread and lock state that a single-threaded caller does
    not have, and running them makes the child copy ~200 shared pages (about 0.8 ms).  The
    interpreter lock stays held across the call (a PyDLL function), so the child resumes
    exactly where the parent was.  Only a single-threaded process may call this.
    Returns 0 in the child and the child's pid in the parent.
    """
    args: list[object] = [ctypes.c_ulong(flags | signal.SIGCHLD), None, None, None, None]
    if _MACHINE == "s390x":  # the only architecture that takes the stack first
        args[0], args[1] = None, args[0]
    pid = int(_pylibc.syscall(_number("clone", _SYS_CLONE), *args))
    if pid < 0:
        raise SysError(ctypes.get_errno() or _errno.EIO, "clone", hex(flags))
    return pid


def setns(fd: int, nstype: int) -> None:
    """Move the calling process into the namespace open as ``fd`` (``setns(2)``; Python's
    ``os.setns`` is 3.12 and newer)."""
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        raise SysError(ctypes.get_errno() or _errno.EIO, "setns", hex(nstype))


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``unshare(2)``)."""
    if _libc.unshare(flags) != 0:
        raise SysError(ctypes.get_errno() or _errno.EIO, "unshare", hex(flags))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """``mount(2)``; ``data`` carries the filesystem options (overlay's lowerdir...)."""
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise SysError(ctypes.get_errno() or _errno.EIO, "mount",
                       f"{source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r}")


def umount(target: str, flags: int = 0) -> None:
    """``umount2(2)``."""
    _check(_libc.umount2(_b(target), flags), "umount2", target, flags)


def pivot_root(new_root: str, put_old: str) -> None:
    """``pivot_root(2)``; glibc has no wrapper, hence the raw syscall."""
    _check(_libc.syscall(_number("pivot_root", _SYS_PIVOT_ROOT), _b(new_root), _b(put_old)), "pivot_root", new_root,
           put_old)


OVERLAYFS_MAGIC = 0x794C7630


def filesystem_type(path: str) -> int:
    """The ``f_type`` magic number of the filesystem holding ``path`` (``statfs(2)``; Python's
    ``os.statvfs`` does not report it)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes; f_type comes first
    _check(_libc.statfs(_b(path), buf), "statfs", path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


PROC_SUPER_MAGIC = 0x9FA0


def descriptor_filesystem_type(fd: int) -> int:
    """The ``f_type`` magic of the filesystem an open descriptor lies on (``fstatfs(2)``)."""
    buf = ctypes.create_string_buffer(256)
    _check(_libc.fstatfs(ctypes.c_int(fd), buf), "fstatfs", fd)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def sethostname(name: str) -> None:
    """Set the hostname of the calling process's UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname", name)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def drop_capability(cap: int) -> None:
    """Remove ``cap`` from this process for good: from its bounding set (so that no program it
    starts gets it back) and from its effective, permitted and inheritable sets."""
    _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl", "PR_CAPBSET_DROP", cap)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    word, bit = divmod(cap, 32)
    mask = ~(1 << bit) & 0xFFFFFFFF
    data[word].effective &= mask
    data[word].permitted &= mask
    data[word].inheritable &= mask
    _check(_libc.capset(ctypes.byref(header), data), "capset", cap)


# -- seccomp: calls that reach past the container ------------------------------------------
# Keyrings are per *user namespace*, and every container of an Engine shares one: without
# this, a key that one test's container adds (``keyctl``/``add_key``) is there for the next
# one.  io_uring's kernel threads ignore SIGSTOP, so a container could write its layer while
# a commit copies it "paused".  Docker's default profile refuses both.
#   machine -> ((audit arch, (add_key, request_key, keyctl, io_uring_setup, io_uring_enter,
#   io_uring_register), syscall number mask), ...): the native ABI first, then the 32-bit one
#   the same binary may call (int 0x80 on x86_64).  The mask folds x86_64's x32 numbers (bit
#   30 set) onto the native ones.  io_uring has the same numbers everywhere.
_IO_URING = (425, 426, 427)
_DENIED_SYSCALLS: dict[str, tuple[tuple[int, tuple[int, ...], int], ...]] = {
    "x86_64": ((0xC000003E, (248, 249, 250, *_IO_URING), 0xBFFFFFFF),
               (0x40000003, (286, 287, 288, *_IO_URING), 0xFFFFFFFF)),
    "aarch64": ((0xC00000B7, (217, 218, 219, *_IO_URING), 0xFFFFFFFF),
                (0x40000028, (309, 310, 311, *_IO_URING), 0xFFFFFFFF)),
    "riscv64": ((0xC00000F3, (217, 218, 219, *_IO_URING), 0xFFFFFFFF),),
}
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
# classic BPF: load a word of seccomp_data (nr at 0, arch at 4), compare, mask, return
_BPF_LD_ABS, _BPF_JEQ, _BPF_AND, _BPF_RET = 0x20, 0x15, 0x54, 0x06


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def _filter_program(abis: tuple[tuple[int, tuple[int, ...], int], ...]) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k): per ABI, "if arch matches: deny those calls, allow the
    rest"; any other architecture is allowed.  Jumps count instructions to skip."""
    prog: list[tuple[int, int, int, int]] = [(_BPF_LD_ABS, 0, 0, 4)]
    sections = []
    for arch, numbers, mask in abis:
        body = [(_BPF_LD_ABS, 0, 0, 0), (_BPF_AND, 0, 0, mask)]
        body += [(_BPF_JEQ, -1, 0, n) for n in numbers]  # jt patched below: to the deny at the end
        body.append((_BPF_RET, 0, 0, _SECCOMP_RET_ALLOW))
        sections.append([(_BPF_JEQ, 0, len(body), arch), *body])
    for section in sections:
        prog += section
    prog.append((_BPF_RET, 0, 0, _SECCOMP_RET_ALLOW))
    prog.append((_BPF_RET, 0, 0, _SECCOMP_RET_ERRNO | _errno.EPERM))
    deny = len(prog) - 1
    return [(code, deny - i - 1 if jt == -1 else jt, jf, k) for i, (code, jt, jf, k) in enumerate(prog)]


def _filter_fprog() -> tuple[_SockFprog, ctypes.Array[_SockFilter]] | None:
    abis = _DENIED_SYSCALLS.get(_MACHINE)
    if abis is None:
        return None
    program = _filter_program(abis)
    filters = (_SockFilter * len(program))(*(_SockFilter(*ins) for ins in program))
    return _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter))), filters


# Built once, in the zygote: each container's pid 1 only makes the one prctl call.
_FILTER_FPROG = _filter_fprog()


def deny_shared_kernel_calls() -> bool:
    """Make the key management calls and io_uring fail with EPERM for this process and
    everything it starts (a seccomp filter; no way back).  False on an architecture this
    module has no syscall numbers for, or a kernel built without seccomp filters (EINVAL):
    containers still run there, as they did before the filter.

    The caller needs ``CAP_SYS_ADMIN`` in its user namespace (pid 1 of a container has it):
    then no ``no_new_privs`` is needed, and set-user-ID programs in the container still work.
    """
    if _FILTER_FPROG is None:
        return False
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(_FILTER_FPROG[0]), 0, 0) != 0:
        err = ctypes.get_errno() or _errno.EIO
        if err == _errno.EINVAL:
            return False
        raise SysError(err, "prctl", "PR_SET_SECCOMP, key management and io_uring")
    return True


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send ``sig`` when the parent (thread) that forked us exits."""
    _check(_libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG", sig)


def set_dumpable(dumpable: bool) -> None:
    """``PR_SET_DUMPABLE``: a process that is not dumpable cannot be ptraced, nor its /proc
    entries (mem, environ, fd, exe) opened, by anyone without CAP_SYS_PTRACE over the user
    namespace its memory was made in (for a process forked from the zygote: the host's)."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, int(dumpable), 0, 0, 0), "prctl", "PR_SET_DUMPABLE", int(dumpable))


def set_child_subreaper() -> None:
    """Make orphaned descendants reparent to us instead of to the host's init."""
    _check(_libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl", "PR_SET_CHILD_SUBREAPER", 1)


def bring_up_loopback() -> None:
    """Set IFF_UP on ``lo`` in the current network namespace (SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        try:
            flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, ifreq))[1]
            fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
        except OSError as exc:
            raise SysError(exc.errno or _errno.EIO, "ioctl", "SIOCSIFFLAGS lo up") from exc


def mknod_whiteout(path: str) -> None:
    """Create an overlayfs whiteout (a 0:0 character device), allowed without CAP_MKNOD."""
    import stat

    try:
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    except OSError as exc:
        raise SysError(exc.errno or _errno.EIO, "mknod", f"{path!r} whiteout") from exc


# -- pseudo-terminals ---------------------------------------------------------------------------
_TIOCSCTTY = 0x540E
_TIOCGWINSZ = 0x5413
_TIOCSWINSZ = 0x5414
_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441
_FIONREAD = 0x541B


def open_terminal(ptmx: str) -> tuple[int, int]:
    """A new pseudo-terminal from the devpts instance ``ptmx`` belongs to: (master, slave).

    The slave comes from ``TIOCGPTPEER`` (Linux 4.13), not from a path under ``pts/``: the
    slave is the master's own peer even if a process of the container swapped the node
    (the CVE-2017-2616 class of races).  Both are close-on-exec and neither becomes our
    controlling terminal.
    """
    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    try:
        master = os.open(ptmx, flags)
    except OSError as exc:
        raise SysError(exc.errno or _errno.EIO, "open", f"{ptmx!r}") from exc
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, _TIOCGPTPEER, flags)
    except OSError as exc:
        os.close(master)
        raise SysError(exc.errno or _errno.EIO, "ioctl", "TIOCGPTPEER") from exc
    return master, slave


def set_controlling_terminal(fd: int) -> None:
    """Make the terminal ``fd`` the controlling terminal of this session (its leader calls it)."""
    try:
        fcntl.ioctl(fd, _TIOCSCTTY, 0)
    except OSError as exc:
        raise SysError(exc.errno or _errno.EIO, "ioctl", "TIOCSCTTY") from exc


def window_size(fd: int) -> tuple[int, int] | None:
    """The (rows, columns) of the terminal ``fd``; None when ``fd`` is no terminal."""
    try:
        rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, _TIOCGWINSZ, bytes(8)))
    except OSError:
        return None
    return rows, cols


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Tell the terminal ``fd`` its size (the kernel sends SIGWINCH to its foreground group)."""
    try:
        fcntl.ioctl(fd, _TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError as exc:
        raise SysError(exc.errno or _errno.EIO, "ioctl", f"TIOCSWINSZ {rows}x{cols}") from exc


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal ``fd`` in raw mode (no echo, no line editing, no signal keys) inside the block.

    The container's own terminal does all of that; the host's passes bytes through.  The
    previous settings come back on the way out, also after an exception.
    """
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def terminal_peer(master: int) -> int:
    """A new descriptor of the slave of the pseudo-terminal ``master`` (close-on-exec, not our
    controlling terminal); works from outside the namespaces the terminal was made in."""
    try:
        return int(fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC))
    except OSError as exc:
        raise SysError(exc.errno or _errno.EIO, "ioctl", "TIOCGPTPEER") from exc


def unread_input(fd: int) -> int:
    """Bytes a program could read now from the terminal ``fd`` (``FIONREAD``: whole lines only
    in canonical mode)."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, _FIONREAD, bytes(4)))[0])
    except OSError as exc:
        raise SysError(exc.errno or _errno.EIO, "ioctl", "FIONREAD") from exc


# -- network namespaces -------------------------------------------------------------------------
_SIOCGIFINDEX = 0x8933


def interface_index(sock_fd: int, name: str) -> int:
    """The index of the interface ``name`` in the network namespace of the socket ``sock_fd``."""
    try:
        reply = fcntl.ioctl(sock_fd, _SIOCGIFINDEX, struct.pack("16si20x", name.encode(), 0))
    except OSError as exc:
        raise SysError(exc.errno or _errno.EIO, "ioctl", f"SIOCGIFINDEX {name!r}") from exc
    return int(struct.unpack("16si20x", reply)[1])
