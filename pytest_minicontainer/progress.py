"""Progress of pulls and builds: lines of text for the API and pytest's terminal, a bar for the CLI.

A registry download reports bytes (``digest, done, total``) many times a second; people and
log files want a few lines per layer, a terminal wants one line redrawn in place.  Both are
made here from the same byte counts, so the registry client knows nothing of how progress
is shown.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["BlobBar", "BlobLines", "Lines", "human_size", "lines_for"]

#: Where progress lines go: one call per line, without a newline.
Lines = Callable[[str], None]


def human_size(n: float) -> str:
    """``1.5MB``: decimal units, as ``docker images`` shows sizes."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}TB"  # pragma: no cover


def lines_for(progress: Lines | bool | None) -> Lines | None:
    """What an API's ``progress=`` asks for: a callable gets the lines, True prints them on
    stderr, None and False show nothing."""
    if progress is True:
        return lambda line: print(line, file=sys.stderr, flush=True)
    if progress is None or progress is False:
        return None
    if not callable(progress):
        raise TypeError(f"progress must be a callable taking one line of text, True or None, not {progress!r}")
    return progress


def _short(digest: str) -> str:
    return digest.partition(":")[2][:12] or digest[:12]


class BlobLines:
    """A pull's byte counts as a few lines per blob: when it starts, at each quarter, when done.

    It also counts what was downloaded (``blobs``, ``bytes``): a pull that found every blob
    in the store reports nothing, and the caller can say so.
    """

    def __init__(self, emit: Lines | None, prefix: str = "", verb: str = "downloading") -> None:
        self.emit = emit
        self.prefix = prefix
        self.verb = verb
        self._quarters: dict[str, int] = {}
        self._done: dict[str, int] = {}

    @property
    def blobs(self) -> int:
        return len(self._done)

    @property
    def bytes(self) -> int:
        return sum(self._done.values())

    def __call__(self, digest: str, done: int, total: int | None) -> None:
        first = digest not in self._done
        self._done[digest] = done
        if self.emit is None:
            return
        name = f"{self.prefix}{_short(digest)}"
        if first:
            self.emit(f"{name}: {self.verb}{f' {human_size(total)}' if total else ''}")
        if not total:
            return
        quarter = min(4, done * 4 // total)
        if quarter > self._quarters.get(digest, 0):
            self._quarters[digest] = quarter
            self.emit(f"{name}: done, {human_size(total)}" if quarter == 4
                      else f"{name}: {human_size(done)}/{human_size(total)}")


class BlobBar:
    """A pull's byte counts as one line per blob with a bar, redrawn in place (``\\r``) at most
    ten times a second: for a terminal."""

    WIDTH = 30

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self._current = ""
        self._last = 0.0

    def __call__(self, digest: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if digest == self._current and now - self._last < 0.1 and done != total:
            return
        if digest != self._current and self._current:
            self.out.write("\n")
        self._current, self._last = digest, now
        if total:
            filled = min(self.WIDTH, done * self.WIDTH // total)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {human_size(done)}/{human_size(total)}"
        else:
            bar = f"{human_size(done)}"
        self.out.write(f"\r{_short(digest)}: {bar}\x1b[K")
        self.out.flush()

    def finish(self) -> None:
        """End the last line (call once the pull is over)."""
        if self._current:
            self.out.write("\n")
            self.out.flush()
            self._current = ""
