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
    inline: bool = False  # a heredoc of the Containerfile written out (not a context file)

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
        if posixpath.normpath(pattern.lstrip("/")).split("/")[0] == "..":  # not "..foo", a name
            raise BuildError(f"{kind} source {pattern!r} is outside the build context {root}", line=line,
                             command=command)
        if any(ch in clean for ch in _MAGIC):
            rels = _glob(root, clean)
            rels = [r for r in rels if not _excluded(root, r, ignore)]
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
            if rel != "." and _excluded(root, rel, ignore):
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


def _excluded(root: str, rel: str, ignore: IgnoreRules) -> bool:
    """Whether the ignore file hides the context entry ``rel`` completely.

    An excluded directory that an exception reaches into (``docs`` + ``!docs/README.md``)
    still exists in Docker's context, holding what the exceptions re-include.
    """
    if not ignore.ignored(rel):
        return False
    host = os.path.join(root, rel)
    if not os.path.isdir(host) or os.path.islink(host) or not ignore.may_include_below(rel):
        return True
    return next(walk(Source(host, rel), ignore), None) is None


def walk(source: Source, ignore: IgnoreRules) -> Iterator[tuple[str, str]]:
    """(relative path below the source, host path) of every entry to copy, parents first.

    For a file source the one entry has the relative path ``""``.  Symlinks below a
    directory are yielded (copied as links), never followed.  An excluded directory is
    skipped unless a ``!`` pattern may re-include something below it (Docker's rule); then
    the walk goes in, and the directory itself is yielded only when something below it is,
    just before that entry (as BuildKit sends the parents of an included file).
    """
    if not source.is_dir:
        yield "", source.host
        return
    # (directory, the excluded directories above it not yielded yet, outermost first)
    stack: list[tuple[str, tuple[tuple[str, str], ...]]] = [("", ())]
    yielded: set[str] = set()
    while stack:
        rel, pending = stack.pop()
        base = os.path.join(source.host, rel)
        for name in sorted(os.listdir(base), reverse=True):
            child = f"{rel}/{name}" if rel else name
            ctx_rel = child if source.rel == "." else f"{source.rel}/{child}"
            full = os.path.join(source.host, child)
            is_dir = os.path.isdir(full) and not os.path.islink(full)
            if ignore.ignored(ctx_rel):
                if is_dir and ignore.may_include_below(ctx_rel):
                    stack.append((child, (*pending, (child, full))))
                continue
            for parent in pending:
                if parent[0] not in yielded:
                    yielded.add(parent[0])
                    yield parent
            yield child, full
            if is_dir:
                stack.append((child, ()))


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
