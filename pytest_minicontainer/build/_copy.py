"""COPY and ADD: write the files of one step into a fresh layer directory on the host.

No container runs: the files go straight into the directory that becomes the layer, so COPY
works for ``scratch`` and for images without a shell or ``tar``.  Destination directories
that already exist in the image are re-created in the layer with the image's mode (and, as
root, owner), and symlinked ones are followed inside the image, so a layer never replaces
``/lib -> usr/lib`` by a real directory.

Ownership: new files belong to 0:0 inside the container (as root they are created as root;
rootless they belong to the invoking user, whom the user namespace maps to root).
``--chown`` is applied here with ``lchown`` when the process is real root; a rootless build
cannot give host files to other ids, so the executor then runs ``chown`` inside a container
of the new image (its own small layer; it needs ``chown`` in the image).  Either way it
applies to exactly the entries the step copied and the directories it created, never to
what the image already had around them (``COPY --chown=app dir/ /usr/local/`` leaves
``/usr/local`` and its other files alone, as Docker does): :func:`stage_files` returns
that list.

ADD unpacks a local archive the way Docker does, which is not how an image layer is
applied: only a file whose first tar header is valid (after gzip, bzip2, xz or zstd) is an
archive, anything else is copied as it is, and ``.wh.*`` members are ordinary files.
"""

from __future__ import annotations

import bz2
import contextlib
import fnmatch
import gzip
import importlib.util
import lzma
import os
import posixpath
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, cast

from ..errors import BuildError, ImageError
from ..image import Image, ImageConfig
from ..images import ImageView, unpack_layer
from ._context import Source, walk
from ._ignore import IgnoreRules
from ._plan import Step

__all__ = ["make_dirs", "parse_chown", "stage_files"]


def _lookup(view: ImageView, file: str, name: str) -> int | None:
    rel = view.resolve(file)
    host = view.entry(rel) if rel else None
    if not host or not os.path.isfile(host):
        return None
    with open(host, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                return int(fields[2])
    return None


def parse_chown(spec: str, view: ImageView, step: Step) -> tuple[int, int]:
    """``user[:group]`` (names looked up in the image's /etc/passwd and /etc/group)."""
    user, _, group = spec.partition(":")

    def one(value: str, file: str) -> int:
        if value.isdigit():
            return int(value)
        found = _lookup(view, file, value)
        if found is None:
            raise BuildError(f"{step.kind} --chown={spec}: no {value!r} in the image's {file}", line=step.line,
                             command=step.text)
        return found

    uid = one(user, "/etc/passwd")
    return uid, one(group, "/etc/group") if group else uid


class _Writer:
    """Creates entries under ``root`` (the layer) with the step's modes and owners."""

    def __init__(self, root: Path, view: ImageView, step: Step, owner: tuple[int, int] | None) -> None:
        self.root = root
        self.view = view
        self.step = step
        self.chown = owner  # what --chown asks for
        self.owner = owner if os.geteuid() == 0 else None  # what this process applies itself
        self.owned: list[str] = []  # layer paths --chown applies to, in creation order

    def host(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else str(self.root)

    def ensure_dirs(self, rel: str, last_new_mode: int | None = None) -> None:
        """Create ``rel`` and its ancestors in the layer, with the image's modes where they exist."""
        parts = [p for p in rel.split("/") if p]
        for n in range(1, len(parts) + 1):
            sub = "/".join(parts[:n])
            path = self.host(sub)
            if os.path.isdir(path) and not os.path.islink(path):
                continue
            if os.path.lexists(path):
                os.unlink(path)
            existing = self.view.entry(sub)
            st = os.stat(existing) if existing and os.path.isdir(existing) else None
            os.mkdir(path)
            if st is not None:
                os.chmod(path, stat.S_IMODE(st.st_mode))
                if os.geteuid() == 0:
                    os.lchown(path, st.st_uid, st.st_gid)
            else:
                os.chmod(path, last_new_mode if (n == len(parts) and last_new_mode is not None) else 0o755)
                self.own(sub)

    def own(self, rel: str, host: str | None = None) -> None:
        """Record the layer path ``rel`` for --chown, and apply it when this process may."""
        if self.chown is None:
            return
        self.owned.append(rel)
        if self.owner is not None:
            os.lchown(host or self.host(rel), *self.owner)

    def clear(self, path: str) -> None:
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            os.unlink(path)

    def file(self, src: str, dest_rel: str) -> None:
        """Copy one non-directory entry."""
        target = self.host(dest_rel)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        self.clear(target)
        st = os.lstat(src)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), target)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, target, follow_symlinks=False)
            os.chmod(target, self.step.chmod if self.step.chmod is not None else stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            return  # sockets, fifos, devices in a context are not copied (as Docker)
        self.own(dest_rel)

    def directory(self, src: str, dest_rel: str) -> None:
        target = self.host(dest_rel)
        self.clear(target)
        if not os.path.isdir(target):
            os.mkdir(target)
        mode = stat.S_IMODE(os.stat(src).st_mode)
        os.chmod(target, self.step.chmod if self.step.chmod is not None else mode)
        self.own(dest_rel)


def make_dirs(root: Path, view: ImageView, step: Step, path: str) -> None:
    """Create the image path ``path`` (WORKDIR) and its missing ancestors in the layer ``root``."""
    _Writer(root, view, step, None).ensure_dirs(view.resolve_parent(path))


# magic numbers of the compressions Docker's ADD unpacks (and what decodes them here)
_COMPRESSIONS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_BLOCK = 512


def _valid_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header Go's ``archive/tar`` accepts: a name and a right checksum.

    ``tarfile.is_tarfile`` also says yes to a block of zeros (an empty archive), which would
    make ADD swallow any file that starts with 512 zero bytes (a disk image) and copy nothing.
    """
    if len(block) < _BLOCK or not block[:100].split(b"\0", 1)[0]:
        return False
    try:
        stored = int(block[148:156].strip(b" \0") or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:_BLOCK])
    signed = unsigned - sum(256 for b in (*block[:148], *block[156:_BLOCK]) if b > 127)
    return stored in (unsigned, signed)


@contextlib.contextmanager
def _decoded(path: str, compression: str) -> Iterator[IO[bytes]]:
    """The file's bytes with ``compression`` undone."""
    with open(path, "rb") as raw:
        if compression == "tar":
            yield raw
        elif compression == "gzip":
            with gzip.GzipFile(fileobj=raw) as f:
                yield cast(IO[bytes], f)
        elif compression == "bzip2":
            with bz2.BZ2File(raw) as f:
                yield f
        elif compression == "xz":
            with lzma.LZMAFile(raw) as f:
                yield f
        else:
            import zstandard  # the caller made sure it is there

            with zstandard.ZstdDecompressor().stream_reader(raw, closefd=False) as z:
                yield cast(IO[bytes], _Reader(z))


class _Reader:
    """``read(n)`` that returns ``n`` bytes unless the stream ends (zstd's may return fewer)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        while n < 0 or sum(map(len, parts)) < n:
            data: bytes = self.stream.read(-1 if n < 0 else n - sum(map(len, parts)))
            if not data:
                break
            parts.append(data)
        return b"".join(parts)


def _archive(path: str) -> str | None:
    """The compression of the tar archive at ``path`` ("tar" when none), or None: copy it as a file.

    Docker's rule: undo a compression its magic number announces, then the file is an
    archive exactly when the first header reads as one.  A compressed file that is not a
    tar (``notes.txt.gz``) is copied as it is, like any other file.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError:
        return None
    compression = next((name for prefix, name in _COMPRESSIONS if magic.startswith(prefix)), "tar")
    if compression == "zstd" and importlib.util.find_spec("zstandard") is None:
        return "zstd"  # cannot look inside: unpacking says which extra to install
    try:
        with _decoded(path, compression) as stream:
            head = stream.read(_BLOCK)
    except Exception:  # any decoding error (each library has its own): not an archive, as in Docker
        return None
    return compression if _valid_tar_header(head) else None


def _unpack_archive(source: Source, compression: str, dest: Path, step: Step, limit: int | None) -> None:
    """Unpack the archive ``source`` into the empty directory ``dest``, the way ADD does.

    The layer unpacker's safety rules apply (no escapes, links never followed), but not its
    image-layer meaning of ``.wh.*`` names (``layer=False``): Docker's ADD extracts
    ``etc/.wh.passwd`` as a file of that name, it does not delete ``/etc/passwd``.
    """
    try:
        if compression in ("bzip2", "xz"):  # the layer unpacker reads tar, gzip and zstd itself
            with _decoded(source.host, compression) as blob:
                unpack_layer(blob, dest, source=source.rel, layer=False, limit=limit)
        else:
            with open(source.host, "rb") as blob:
                unpack_layer(blob, dest, source=source.rel, layer=False, limit=limit)
    except (ImageError, EOFError, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the file system's (ENOSPC...), not the archive's; bz2 reports bad data without errno
        raise BuildError(f"ADD {source.rel}: cannot extract the archive: {exc}", line=step.line,
                         command=step.text) from exc


def _merge_move(src: str, dst: str) -> None:
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if os.path.isdir(s) and not os.path.islink(s) and os.path.isdir(d) and not os.path.islink(d):
            _merge_move(s, d)
            shutil.copystat(s, d, follow_symlinks=False)
            continue
        if os.path.isdir(d) and not os.path.islink(d):
            shutil.rmtree(d)
        elif os.path.lexists(d):
            os.unlink(d)
        os.rename(s, d)


def inline_sources(step: Step, scratch: Path) -> Step:
    """``step`` with its heredocs (``COPY <<EOF /f``) as files in ``scratch``, after its sources.

    Mode 0644 as BuildKit gives them (``--chmod`` applies as to any file); never unpacked by ADD.
    """
    sources = list(step.sources)
    for n, (name, content) in enumerate(step.inline):
        where = scratch / str(n)
        where.mkdir()
        path = where / name
        path.write_text(content, encoding="utf-8")
        path.chmod(0o644)
        sources.append(Source(str(path), name, inline=True))
    return replace(step, sources=sources, inline=())


def stage_files(step: Step, root: Path, parent: ImageView, *, source_view: ImageView | None,
                ignore: IgnoreRules, owner: tuple[int, int] | None, scratch: Callable[[], Path],
                max_layer_size: int | None = None) -> list[str]:
    """Write what ``step`` copies into the empty layer directory ``root``.

    An archive ``ADD`` extracts may unpack to ``max_layer_size`` bytes (None: the environment's cap).

    Returns the layer paths ``owner`` (--chown) applies to, parents first: every entry
    copied, and the directories created for them; not the image's directories that
    were only re-created to hold them (empty without ``owner``).  As root they already
    have that owner; rootless the executor gives it to them inside the user namespace.
    """
    w = _Writer(root, parent, step, owner)
    dest = parent.resolve_parent(step.dest)
    existing = parent.resolve(step.dest)
    found = parent.entry(existing) if existing is not None else None
    into_dir = step.dest_is_dir or (found is not None and os.path.isdir(found))
    if source_view is not None:
        _from_image(step, w, dest, source_view, into_dir)
        return w.owned
    for source in step.sources:
        if source.is_dir:
            w.ensure_dirs(dest)
            for rel, full in walk(source, ignore):
                target = f"{dest}/{rel}".strip("/")
                if os.path.isdir(full) and not os.path.islink(full):
                    w.directory(full, target)
                else:
                    w.file(full, target)
        elif step.kind == "ADD" and not source.inline and os.path.isfile(source.host) \
                and (compression := _archive(source.host)):
            w.ensure_dirs(dest)
            tmp = scratch()
            unpacked = tmp / "x"
            unpacked.mkdir()
            _unpack_archive(source, compression, unpacked, step, max_layer_size)
            for dirpath, dirs, files in os.walk(unpacked):
                for name in sorted([*dirs, *files]):
                    host = os.path.join(dirpath, name)
                    w.own(f"{dest}/{os.path.relpath(host, unpacked)}".strip("/"), host)
            _merge_move(str(unpacked), w.host(dest))
        else:
            target = f"{dest}/{posixpath.basename(source.rel)}".strip("/") if into_dir else dest
            w.ensure_dirs(posixpath.dirname(target))
            w.file(source.host, target)
    return w.owned


def copy_from_image(view: ImageView, source: str, root: Path, *, line: int, command: str) -> Path:
    """``source`` of the image ``view`` shows, merged from its layers, as ``root/copy``
    (what ``RUN --mount=type=bind,from=...`` mounts)."""
    step = Step(line, "COPY", command, ImageConfig(), from_ref="", from_paths=(source,), dest="/copy")
    _from_image(step, _Writer(root, ImageView(Image(digest=_NOTHING)), step, None), "copy", view, False)
    return root / "copy"


_NOTHING = "sha256:" + "0" * 64  # an image without layers: nothing below the copy


def _from_image(step: Step, w: _Writer, dest: str, view: ImageView, into_dir: bool) -> None:
    matches: list[str] = []
    for pattern in step.from_paths:
        parent, base = posixpath.split(posixpath.normpath("/" + pattern))
        if any(ch in base for ch in "*?["):
            rel_parent = view.resolve(parent)
            names = [n for n in view.listdir(rel_parent) if fnmatch.fnmatchcase(n, base)] if rel_parent is not None \
                else []
            found = [f"{rel_parent}/{n}".strip("/") for n in names]
        else:
            rel = view.resolve(pattern)
            found = [rel] if rel is not None else []
        if not found:
            raise BuildError(f"{step.kind} --from={step.from_ref}: {pattern} does not exist in that image",
                             line=step.line, command=step.text)
        matches.extend(found)
    dest_is_dir = into_dir or len(matches) > 1
    for rel in matches:
        host = view.entry(rel)
        if host is None:  # pragma: no cover - resolve() found it
            continue
        if os.path.isdir(host) and not os.path.islink(host):
            w.ensure_dirs(dest)
            _copy_view_dir(view, rel, dest, w)
        else:
            target = f"{dest}/{posixpath.basename(rel)}".strip("/") if dest_is_dir else dest
            w.ensure_dirs(posixpath.dirname(target))
            w.file(host, target)


def _copy_view_dir(view: ImageView, rel: str, dest: str, w: _Writer) -> None:
    for name in view.listdir(rel):
        child = f"{rel}/{name}".strip("/")
        host = view.entry(child)
        if host is None:
            continue
        target = f"{dest}/{name}".strip("/")
        if os.path.isdir(host) and not os.path.islink(host):
            w.directory(host, target)
            _copy_view_dir(view, child, target, w)
        else:
            w.file(host, target)
