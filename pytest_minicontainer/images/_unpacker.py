"""A layer tar's members written into one directory, in overlayfs's on-disk format.

Each layer gets its own directory; the runtime stacks them as overlayfs lower dirs, so
whiteouts are *recorded*, never applied across layers:

* ``.wh.NAME`` becomes a 0:0 character device ``NAME`` (overlayfs's whiteout); a whiteout
  below a non-directory of the same layer is dropped (umoci writes ``sub/.wh.y`` after
  replacing the directory ``sub`` by a file; the file already hides everything below it),
* ``.wh..wh..opq`` sets ``user.overlay.opaque=y`` on its directory (the runtime mounts with
  ``userxattr``); other ``.wh..wh.*`` entries (aufs bookkeeping) are ignored, as Docker does,
* a directory over a directory merges, anything else replaces what the layer had there.

Ownership: as root the tar's uid/gid are applied (``lchown``); unprivileged, every file
belongs to the current user (the user namespace maps it to root inside the container), since
an unprivileged process cannot chown, and the owners it could not give are returned
(``UnpackResult.owners``) for the store to set where they are mapped (a subordinate id
range: see ``store._trees``).  Modes are kept including setuid/setgid/sticky; device
nodes are created only as root and skipped otherwise (they are useless in a rootless
container, whose /dev is the runtime's); fifos are created.

Safety (tarfile's ``data`` filter is wrong for a rootfs: it rejects absolute symlinks and
strips setuid): member names are normalised lexically and must stay inside the layer;
absolute member names are *rejected* (Docker silently strips the "/", but no image tool
writes them, so one is a sign of a hostile or broken archive, and an error is easier to act on
than a silent rename).  Symlinks are created verbatim (absolute targets are meant for the
container's root) and are never followed: the target directory starts empty and every entry
created in it is tracked, so a member whose parent is a symlink, file or device in this
layer is refused without any filesystem lookup, which also makes symlink loops harmless.
Hard links must name a non-directory earlier in the same layer.  Directories are created
owner-writable and get their final mode and mtime at the end, deepest first, so read-only
directories can still be filled.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
from collections.abc import Sequence

from .. import _sys
from .._rmtree import remove_tree
from ..errors import ImageError
from ..image import Image
from ..rootpath import resolve_in_root
from ._stream import CHUNK, LayerReader
from ._tar import Member
from ._view import ImageView

__all__ = ["MAX_DEPTH", "OPAQUE_XATTR", "Unpacker", "normalise_member"]

OPAQUE_XATTR = "user.overlay.opaque"
_WH = ".wh."
_OPQ = ".wh..wh..opq"
_AUFS = ".wh..wh."
# Deeper paths are refused: walking, hashing and removing trees recurse once per level in
# Python before 3.12 (os.walk, shutil.rmtree), and no real image nests anywhere near this.
MAX_DEPTH = 256

# what the layer directory holds at a path, as far as this unpack knows
_DIR, _FILE, _LINK, _WHITEOUT, _OTHER = "d", "f", "l", "w", "o"


def normalise_member(name: str) -> str:
    """The member's path relative to the layer root ("" for the root itself).

    Raises ValueError (turned into ImageError by the caller) for absolute names and ``..``
    escapes.
    """
    if name.startswith("/"):
        raise ValueError("absolute path (image layers must use relative member names)")
    norm = posixpath.normpath(name)
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        raise ValueError("path escapes the layer through '..'")
    return norm


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o7777  # unknown: always chmod


def _ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000)


class Unpacker:
    """One layer directory being written, member by member (see the module's rules).

    ``kinds`` is what the directory holds at each path as far as this unpack knows: it lets
    every check be made without a filesystem lookup that a symlink could redirect.
    """

    def __init__(self, dest: str, source: str, *, is_root: bool, lowers: Sequence[str] = (),
                 layer: bool = True) -> None:
        self.dest = dest
        self.source = source
        self.is_root = is_root
        self.layer = layer
        # The parents' merged view (bottom first), to follow their symlinks as Docker does.
        self.below = ImageView(Image(digest="", layer_dirs=tuple(lowers))) if lowers else None
        self.kinds: dict[str, str] = {"": _DIR}
        # rel -> mode, mtime_ns (None: implicit parent, leave it), uid, gid
        self.dirs: dict[str, tuple[int, int | None, int, int]] = {}
        self.entries = 0
        self.umask = _umask()
        self.owners: dict[str, tuple[int, int]] = {}  # see UnpackResult.owners
        self.opaque: set[str] = set()  # directories of this layer marked opaque

    # -- helpers -------------------------------------------------------------------------
    def normalise(self, name: str) -> str:
        """``normalise_member``; a plain archive's absolute names lose their "/", as tar does."""
        return normalise_member(name if self.layer else name.lstrip("/"))

    def fail(self, member: str, problem: str) -> ImageError:
        return ImageError(f"layer member {member!r}: {problem}", path=self.source)

    def abs(self, rel: str) -> str:
        return self.dest + "/" + rel if rel else self.dest

    def ensure_dir(self, rel: str, member: str) -> None:
        """Make ``rel`` an (implicit) directory of this layer, refusing non-dir parents."""
        missing: list[str] = []  # top-down, without recursion: a path may be thousands deep
        while self.kinds.get(rel) is None:
            missing.append(rel)
            rel = posixpath.dirname(rel)
        for path in [rel, *reversed(missing)]:
            kind = self.kinds.get(path)
            if kind == _DIR:
                continue
            if kind is not None and kind != _WHITEOUT:
                what = "a symbolic link" if kind == _LINK else "not a directory"
                raise self.fail(member, f"parent {path!r} is {what} in this layer; refusing to write through it")
            if kind == _WHITEOUT:
                os.unlink(self.abs(path))
            os.mkdir(self.abs(path), 0o755)
            self.kinds[path] = _DIR
            self.dirs[path] = (0o755, None, 0, 0)  # Docker creates missing parents 0755 root:root
            if kind == _WHITEOUT:
                # deleted below, then filled again in the same layer: an opaque directory
                self.make_opaque(path)

    def make_opaque(self, rel: str) -> None:
        """Hide what lower layers have below the directory ``rel`` (overlayfs's opaque mark)."""
        os.setxattr(self.abs(rel), OPAQUE_XATTR, b"y")
        self.opaque.add(rel)

    def hides_below(self, rel: str) -> bool:
        """True when this layer deleted ``rel`` or one of its parents (whiteout, opaque directory)."""
        while True:
            if self.kinds.get(rel) == _WHITEOUT or rel in self.opaque:
                return True
            if not rel:
                return False
            rel = posixpath.dirname(rel)

    def whiteout_root(self) -> None:
        """An opaque mark on the layer's root, which overlayfs ignores there.

        Instead, every name the lower layers have at the top gets a whiteout, or is made
        opaque where this layer has a directory of that name already; a name this layer makes
        later replaces its whiteout, as it would in a subdirectory.
        """
        if self.below is None:
            return
        for name in self.below.listdir(""):
            kind = self.kinds.get(name)
            if kind is None:
                _sys.mknod_whiteout(self.abs(name))
                self.kinds[name] = _WHITEOUT
            elif kind == _DIR:
                self.make_opaque(name)

    def through_lower_links(self, rel: str) -> str:
        """``rel`` with a lower layer's symlinked parent followed (``bin/x`` -> ``usr/bin/x``).

        Docker applies a layer onto its parents' merged tree, so a member below a directory that
        a lower layer made a symlink is written where the link points.  Only parents this layer
        does not have itself are looked up below (this layer's own entries decide the rest), and
        the link is resolved inside the image, so the result never leaves the layer.
        """
        if self.below is None or "/" not in rel:
            return rel
        parts = rel.split("/")
        for n in range(1, len(parts)):
            head = "/".join(parts[:n])
            if head in self.kinds:
                continue
            host = self.below.entry(head)
            if host is None or not os.path.islink(host):
                continue

            def lookup(sub: str) -> str | None:
                if sub in self.kinds:
                    return self.abs(sub)
                assert self.below is not None
                return self.below.entry(sub)

            resolved = resolve_in_root("/".join(parts[:-1]), lookup)
            if resolved is None:
                raise self.fail(rel, "too many levels of symbolic links in its parents")
            return "/".join([*resolved, parts[-1]])
        return rel

    def _hidden_by_non_dir(self, rel: str) -> bool:
        """True when ``rel`` or one of its parents is a non-directory in this layer."""
        while rel:
            kind = self.kinds.get(rel)
            if kind is not None:
                return kind != _DIR
            rel = posixpath.dirname(rel)
        return False

    def clear(self, rel: str) -> None:
        """Remove what this layer has at ``rel`` (before replacing it)."""
        kind = self.kinds.pop(rel, None)
        if kind is None:
            return
        for key in [k for k in self.owners if k == rel or k.startswith(rel + "/")]:
            del self.owners[key]
        path = self.abs(rel)
        if kind == _DIR:
            for p in self.dirs:
                if p == rel or p.startswith(rel + "/"):
                    os.chmod(self.abs(p), 0o700)
            remove_tree(path)  # a layer's tree can be of any depth
            prefix = rel + "/"
            for key in [k for k in self.kinds if k.startswith(prefix)]:
                del self.kinds[key]
            for key in [k for k in self.dirs if k == rel or k.startswith(prefix)]:
                del self.dirs[key]
        else:
            os.unlink(path)

    def own(self, path: str, info: Member, fd: int | None = None) -> None:
        self.chown(path, info.uid, info.gid, fd)

    def chown(self, path: str, uid: int, gid: int, fd: int | None = None) -> None:
        """Apply the tar's owner when we may; squash (keep ours) when the id is not mapped.

        Root inside a user namespace (``unshare -r``, a rootless CI container) is "root" but
        cannot give files to ids its namespace does not map (EINVAL): from then on the layer
        is unpacked as if rootless.
        """
        if not self.is_root:
            if (uid, gid) != (0, 0) and len(path) > len(self.dest):
                self.owners[path[len(self.dest) + 1:]] = (uid, gid)
            return
        try:
            if fd is not None:
                os.fchown(fd, uid, gid)
            else:
                os.lchown(path, uid, gid)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EPERM):
                raise

    # -- entries -------------------------------------------------------------------------
    def entry(self, reader: LayerReader, info: Member) -> None:
        member = info.name
        try:
            rel = self.normalise(member)
        except ValueError as exc:
            raise self.fail(member, str(exc)) from None
        if self.layer and rel.startswith(_AUFS) and rel != _OPQ:
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): skipped, as Docker does
        rel = self.through_lower_links(rel)
        if rel.count("/") >= MAX_DEPTH:
            raise self.fail(member, f"nests {rel.count('/') + 1} levels deep; images may nest at most"
                                    f" {MAX_DEPTH} (rebuild it with a flatter tree)")
        parent, base = posixpath.split(rel)
        if self.layer and base.startswith(_WH):
            if self._hidden_by_non_dir(parent):
                return  # umoci writes these; the non-directory already hides what lies below
            self.ensure_dir(parent, member)
            if base == _OPQ:
                if parent:
                    self.make_opaque(parent)
                else:
                    self.whiteout_root()
            elif not base.startswith(_AUFS):
                target = posixpath.join(parent, base[len(_WH):])
                if not base[len(_WH):] or base[len(_WH):] in (".", ".."):
                    raise self.fail(member, "whiteout without a valid name")
                self.clear(target)
                _sys.mknod_whiteout(self.abs(target))
                self.kinds[target] = _WHITEOUT
            return
        if rel == "":
            if not info.isdir():
                raise self.fail(member, "the layer root must be a directory")
            self.dirs[""] = (info.mode, _ns(info.mtime), info.uid, info.gid)
            return
        self.ensure_dir(parent, member)
        path = self.abs(rel)
        existing = self.kinds.get(rel)
        mode = stat.S_IMODE(info.mode)
        if info.isdir():
            if existing != _DIR:
                self.clear(rel)
                was_whiteout = existing == _WHITEOUT
                os.mkdir(path, 0o700)
                self.kinds[rel] = _DIR
                if was_whiteout:
                    self.make_opaque(rel)
            if info.xattrs:
                self.xattrs(path, info)
            self.dirs[rel] = (mode, _ns(info.mtime), info.uid, info.gid)
            return
        if existing is not None:
            self.clear(rel)
        if info.isreg():
            self.regular(reader, info, path, mode)
            self.kinds[rel] = _FILE
        elif info.issym():
            os.symlink(info.linkname, path)
            self.own(path, info)
            os.utime(path, ns=(_ns(info.mtime),) * 2, follow_symlinks=False)
            self.kinds[rel] = _LINK
        elif info.islnk():
            self.hardlink(info, rel, path)
        elif info.isfifo():
            os.mkfifo(path, 0o600)
            self.finish_node(path, info, mode)
            self.kinds[rel] = _OTHER
        elif info.ischr() or info.isblk():
            if not self.is_root:
                return  # documented: device nodes need CAP_MKNOD; rootless /dev is the runtime's
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(info.devmajor, info.devminor))
            self.finish_node(path, info, mode)
            self.kinds[rel] = _OTHER
        else:
            raise self.fail(member, f"unsupported tar entry type {info.type!r}")

    def finish_node(self, path: str, info: Member, mode: int) -> None:
        self.own(path, info)
        os.chmod(path, mode)
        os.utime(path, ns=(_ns(info.mtime),) * 2)

    def regular(self, reader: LayerReader, info: Member, path: str, mode: int) -> None:
        # unprivileged, nothing changes the owner afterwards, so the mode can be given to
        # open() when the umask leaves it alone: one syscall less per file
        direct = not self.is_root and not mode & (self.umask | 0o7000)  # open() drops setuid
        fd = os.open(path, _CREATE, mode if direct else 0o600)
        try:
            left = info.size
            while left:
                view = reader.read_view(min(left, CHUNK))
                if not view:
                    raise self.fail(info.name, f"truncated tar: file data ends {left} bytes early")
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    left -= n
            self.chown(path, info.uid, info.gid, fd)
            if info.xattrs:
                self.xattrs(fd, info)
            if not direct or info.xattrs:
                os.fchmod(fd, mode)
            os.utime(fd, ns=(_ns(info.mtime),) * 2)
        finally:
            os.close(fd)

    def xattrs(self, target: int | str, info: Member) -> None:
        """Apply the layer's xattrs (file capabilities...) where this process may.

        ``*.overlay.*`` names are never applied: they would forge overlayfs metadata
        (opaque, redirect) that only whiteout entries may create.  Unprivileged, only
        ``user.*`` xattrs can be set; the others are dropped.
        """
        for key, value in info.xattrs.items():
            if ".overlay." in key or (not self.is_root and not key.startswith("user.")):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
                    raise

    def hardlink(self, info: Member, rel: str, path: str) -> None:
        try:
            target = self.through_lower_links(self.normalise(info.linkname))
        except ValueError as exc:
            raise self.fail(info.name, f"hard link target {info.linkname!r}: {exc}") from None
        kind = self.kinds.get(target)
        if kind is None and self.below is not None and not self.hides_below(target):
            kind = self.copy_up(target, info.name)
        if kind is None:
            raise self.fail(info.name, f"hard link to {info.linkname!r}, which is not in the image"
                                       " at this point (links must stay inside the image)")
        if kind in (_DIR, _WHITEOUT):
            what = "a directory" if kind == _DIR else "a whiteout"
            raise self.fail(info.name, f"hard link to {info.linkname!r}, which is {what}")
        # every parent of target was checked when target was created, so this cannot escape
        os.link(self.abs(target), path, follow_symlinks=False)
        self.kinds[rel] = kind

    def copy_up(self, target: str, member: str) -> str | None:
        """Bring a lower layer's regular file into this layer, as overlayfs's copy-up does.

        A hard link to a parent's file (Docker applies layers onto the merged tree, where the
        link is made) needs both names in one directory tree: the file is copied here with
        its mode and owner, so the merged view shows the same content under both names.
        """
        assert self.below is not None
        host = self.below.entry(target)
        if host is None or not os.path.isfile(host) or os.path.islink(host):
            return None
        self.ensure_dir(posixpath.dirname(target), member)
        st = os.lstat(host)
        path = self.abs(target)
        shutil.copyfile(host, path, follow_symlinks=False)
        self.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.kinds[target] = _FILE
        return _FILE

    def finish_dirs(self) -> None:
        for rel in sorted(self.dirs, key=lambda r: r.count("/") + 1 if r else 0, reverse=True):
            mode, mtime, uid, gid = self.dirs[rel]
            path = self.abs(rel)
            self.chown(path, uid, gid)
            os.chmod(path, stat.S_IMODE(mode))
            if mtime is not None:
                os.utime(path, ns=(mtime, mtime))
