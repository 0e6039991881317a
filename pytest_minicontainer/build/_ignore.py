"""``.containerignore`` / ``.dockerignore``: which context files COPY and ADD may not see.

Docker's rules: one pattern a line, ``#`` comments, Go ``filepath.Match`` syntax plus ``**``
(any number of directories), ``!`` re-includes, the last matching pattern wins, and a
pattern that matches a directory excludes everything below it.  Paths are relative to the
context root, with a leading ``/`` ignored.  ``.containerignore`` wins when both exist
(Podman's choice).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

__all__ = ["IgnoreRules", "load_ignore", "parse_ignore", "translate"]

FILES = (".containerignore", ".dockerignore")


def translate(pattern: str, *, whole: bool = False) -> re.Pattern[str]:
    """A regex for a Go-style pattern; unless ``whole``, it also matches everything below."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + ("$" if whole else "(?:/.*)?$"))


@dataclass(frozen=True)
class IgnoreRules:
    """Compiled patterns: (regex, excluded?) in file order, and the ``!`` patterns' text."""

    rules: tuple[tuple[re.Pattern[str], bool], ...] = ()
    source: str = ""
    exceptions: tuple[str, ...] = ()  # the normalised patterns of the ``!`` lines

    def ignored(self, rel: str) -> bool:
        """True when the context-relative path ``rel`` is excluded."""
        rel = rel.strip("/")
        result = False
        for regex, exclude in self.rules:
            if regex.match(rel):
                result = exclude
        return result

    def may_include_below(self, rel: str) -> bool:
        """Whether an exception could re-include something below the excluded directory ``rel``.

        Docker does not skip an excluded directory when a ``!`` pattern may match inside it
        (``docs`` + ``!docs/README.md`` sends ``docs/README.md``): the walk must then go in
        and decide entry by entry.  The answer errs on "yes" (``**`` matches anywhere), which
        only costs a look inside.
        """
        parts = [p for p in rel.strip("/").split("/") if p]
        return any(_could_match_below(pattern.split("/"), parts) for pattern in self.exceptions)


def _could_match_below(pattern: list[str], parts: list[str]) -> bool:
    """Whether the pattern's components can match some path strictly below ``parts``."""
    for n, component in enumerate(pattern):
        if "**" in component:
            return True  # any number of directories: possibly below
        if n == len(parts):
            return True  # the pattern goes deeper than the directory and agrees so far
        if not translate(component, whole=True).match(parts[n]):
            return False
    return True  # it matches the directory or a parent: everything below as well


def parse_ignore(text: str, source: str = "") -> IgnoreRules:
    rules: list[tuple[re.Pattern[str], bool]] = []
    exceptions: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        if not exclude:
            line = line[1:].strip()
        line = posixpath.normpath(line.lstrip("/")) if line.lstrip("/") else ""
        if not line or line == ".":
            continue
        rules.append((translate(line), exclude))
        if not exclude:
            exceptions.append(line)
    return IgnoreRules(tuple(rules), source, tuple(exceptions))


def load_ignore(context: str) -> IgnoreRules:
    """The rules of the context's ignore file (none when it has neither)."""
    for name in FILES:
        path = os.path.join(context, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return parse_ignore(f.read(), name)
    return IgnoreRules()
