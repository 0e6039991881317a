"""The build context: which host files a COPY/ADD names, and a digest of their content.

Sources are checked while the file is planned, before any step runs: a missing source, one
outside the context (``..``, or a symlink leading out) or one excluded by the ignore file is
an error naming the line.  The digest covers names, types, permission bits, link targets and
bytes, never mtimes or owners: touching or re-checking out a file keeps the cache, and
editing one invalidates exactly the steps from its COPY on.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import BuildError
from ..store import file_digest
from ._ignore import IgnoreRules, translate

__all__ = ["Source", "content_digest", "resolve_sources", "walk"]

_MAGIC = ("*", "?", "[")


@dataclass(frozen=True)
class Source:
    """A context file or directory: ``host`` its real path, ``rel`` its path in the context."""

    host: str
    rel: str

    @property
    def is_dir(self) -> bool:
        return os.path.isdir(self.host)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_sources(context: str, patterns: list[str], ignore: IgnoreRules, *, line: int,
                    command: str, kind: str = "COPY") -> list[Source]:
    """The context entries ``patterns`` name (globs expanded, in sorted order)."""
    root = os.path.realpath(context)
    out: list[Source] = []
    for pattern in patterns:
        clean = posixpath.normpath("/" + pattern).lstrip("/") or "."
        if posixpath.normpath(pattern.lstrip("/")).startswith(".."):
            raise BuildError(f"{kind} source {pattern!r} is outside the build context {root}", line=line,
                             command=command)
        if any(ch in clean for ch in _MAGIC):
            rels = _glob(root, clean)
            rels = [r for r in rels if not ignore.ignored(r)]
            if not rels:
                raise BuildError(f"{kind} source {pattern!r} matches no file in the build context {root}"
                                 + (f" (after {ignore.source})" if ignore.source else ""), line=line,
                                 command=command)
        else:
            rels = [clean]
        for rel in rels:
            host = os.path.join(root, rel) if rel != "." else root
            if not os.path.lexists(host):
                raise BuildError(f"{kind} source {pattern!r} does not exist in the build context {root}", line=line,
                                 command=command)
            if rel != "." and ignore.ignored(rel):
                raise BuildError(f"{kind} source {pattern!r} is excluded by {ignore.source} in {root}", line=line,
                                 command=command)
            real = os.path.realpath(host)
            if not _inside(root, real):
                raise BuildError(f"{kind} source {pattern!r} leads outside the build context {root} "
                                 f"(to {real})", line=line, command=command)
            out.append(Source(real, rel))
    return out


def _glob(root: str, pattern: str) -> list[str]:
    """Context-relative paths matching ``pattern`` (Go's filepath.Match: ``*`` matches dotfiles)."""
    regex = translate(pattern, whole=True)
    depth = pattern.count("/") + 1
    found: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        level = 0 if rel_dir == "." else rel_dir.count("/") + 1
        for name in dirs + files:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if regex.match(rel):
                found.append(rel)
        if level + 1 >= depth:
            dirs[:] = []
    return sorted(found)


def walk(source: Source, ignore: IgnoreRules) -> Iterator[tuple[str, str]]:
    """(relative path below the source, host path) of every entry to copy, parents first.

    For a file source the one entry has the relative path ``""``.  Symlinks below a
    directory are yielded (copied as links), never followed.
    """
    if not source.is_dir:
        yield "", source.host
        return
    stack = [""]
    while stack:
        rel = stack.pop()
        base = os.path.join(source.host, rel)
        for name in sorted(os.listdir(base), reverse=True):
            child = f"{rel}/{name}" if rel else name
            ctx_rel = child if source.rel == "." else f"{source.rel}/{child}"
            if ignore.ignored(ctx_rel):
                continue
            full = os.path.join(source.host, child)
            yield child, full
            if os.path.isdir(full) and not os.path.islink(full):
                stack.append(child)


def content_digest(sources: list[Source], ignore: IgnoreRules) -> str:
    """``sha256:`` over the sources' content (names, types, modes, bytes; no mtimes)."""
    h = hashlib.sha256()
    for source in sources:
        h.update(b"S\0" + os.fsencode(source.rel) + b"\n")
        for rel, full in sorted(walk(source, ignore)):
            st = os.lstat(full)
            head = f"{stat.S_IFMT(st.st_mode):o} {stat.S_IMODE(st.st_mode):o} ".encode() + os.fsencode(rel) + b"\0"
            if stat.S_ISLNK(st.st_mode):
                h.update(head + os.fsencode(os.readlink(full)) + b"\n")
            elif stat.S_ISREG(st.st_mode):
                h.update(head + file_digest(full).encode() + b"\n")
            else:
                h.update(head + b"\n")
    return "sha256:" + h.hexdigest()
