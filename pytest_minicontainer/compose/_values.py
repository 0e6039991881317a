"""Typed reads of a compose file's values, each failure a ComposeError that says where.

The Compose Specification's JSON schema gives each key a shape (a string, a list of strings,
"list or dict", a duration...).  Rather than a schema engine, each shape is one small reader
here; a wrong value is reported with the file, the line and the key path
(``services.web.healthcheck.interval``), and the readers accept what docker compose accepts
after interpolation: ``init: "${INIT:-false}"`` is a string that must read as a boolean.
"""

from __future__ import annotations

import difflib
import re
import shlex
import warnings
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

from .. import ComposeError
from ._yaml import KeyPath

__all__ = ["ComposeWarning", "Doc", "parse_duration", "path_text"]


class ComposeWarning(UserWarning):
    """A compose file asks for something that is ignored here (the message says what changes)."""


def path_text(path: KeyPath) -> str:
    """``("services", "web", "ports", 0)`` as ``services.web.ports[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def show(value: Any) -> str:
    """A value for messages, short (a whole mapping can be pasted where a string was expected)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-z\u00b5\u03bc]+)")


def parse_duration(text: str) -> float:
    """A Go duration (``1m30s``, ``500ms``, ``1h2m3.5s``; also ``d`` and ``w``, as compose reads
    them) in seconds; ValueError when it is not one.  ``0`` is the only number without a unit."""
    text = text.strip()
    if text in ("0", "+0"):
        return 0.0
    if text.startswith("-"):
        raise ValueError("a duration cannot be negative")
    rest = text.lstrip("+")
    if not rest:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    while pos < len(rest):
        m = _DURATION_PART.match(rest, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError("expected a number and a unit (ns, us, ms, s, m, h), e.g. 1m30s")
        unit = _DURATION_UNITS.get(m.group(2))
        if unit is None:
            raise ValueError(f"unknown unit {m.group(2)!r} (ns, us, ms, s, m, h, d, w)")
        total += float(m.group(1)) * unit
        pos = m.end()
    return total


class Doc:
    """One file being read: its name, the line of each value, and the errors and warnings made."""

    def __init__(self, file: str, lines: Mapping[KeyPath, int] | None = None) -> None:
        self.file = file
        self.lines = dict(lines or {})

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of the closest enclosing value that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None

    def error(self, path: KeyPath, message: str) -> ComposeError:
        service = str(path[1]) if len(path) >= 2 and path[0] == "services" else None
        key = path_text(path[2:]) or None if service is not None else None
        return ComposeError(message, file=self.file, line=self.line(path), path=path_text(path), service=service,
                            key=key)

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        raise self.error(path, message)

    def warn(self, path: KeyPath, message: str) -> None:
        """A ComposeWarning located at the file's line (as a Python warning names a source line)."""
        text = f"{path_text(path)}: {message}" if path else message
        warnings.warn_explicit(text, ComposeWarning, self.file, self.line(path) or 0)

    # -- shapes ---------------------------------------------------------------------------------
    def keys(self, path: KeyPath, value: Mapping[str, Any], known: Collection[str]) -> None:
        """Refuse keys outside ``known``; ``x-`` keys are extensions, left for other tools."""
        for key in value:
            if key in known or key.startswith("x-"):
                continue
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"
            self.fail((*path, key), f"unknown key {key!r}{hint}")

    def mapping(self, path: KeyPath, value: Any, what: str = "a mapping") -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be {what}, not {show(value)}")
        return value

    def string(self, path: KeyPath, value: Any, *, numbers: bool = False) -> str:
        """A string; with ``numbers`` also an integer (``user: 1000``, ``published: 8080``)."""
        if isinstance(value, str):
            return value
        if numbers and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        self.fail(path, f"must be a string, not {show(value)}")

    def optional_string(self, path: KeyPath, value: Any, *, numbers: bool = False) -> str | None:
        return None if value is None else self.string(path, value, numbers=numbers)

    def strings(self, path: KeyPath, value: Any, *, single: bool = False) -> tuple[str, ...]:
        """A list of strings (with ``single``, one string is a list of one)."""
        if value is None:
            return ()
        if single and isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            self.fail(path, f"must be a list of strings, not {show(value)}")
        return tuple(self.string((*path, i), item) for i, item in enumerate(value))

    def boolean(self, path: KeyPath, value: Any) -> bool:
        """true/false, also as a string after interpolation (``"${DEBUG:-false}"``), as compose casts."""
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "y", "yes", "on"):
                return True
            if lowered in ("false", "n", "no", "off"):
                return False
        self.fail(path, f"must be true or false, not {show(value)}")

    def integer(self, path: KeyPath, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer, also as a string after interpolation."""
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
            number = int(value)
        if number is None:
            self.fail(path, f"must be an integer, not {show(value)}")
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.fail(path, f"must be {bounds}, not {number}")
        return number

    def duration(self, path: KeyPath, value: Any) -> float:
        """A Go duration string in seconds (``1m30s``); a bare number is refused as compose does."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value == 0:
                return 0.0
            self.fail(path, f"must be a duration with a unit, e.g. '{value}s', not the number {value}")
        text = self.string(path, value)
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.fail(path, f"{text!r} is not a duration: {exc}")

    def command(self, path: KeyPath, value: Any) -> tuple[str, ...] | None:
        """``command``/``entrypoint``: None (the image's), a list, or a string split into words as a
        POSIX shell would (compose does not run it through a shell: ``$$HOME`` stays literal)."""
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as exc:
                self.fail(path, f"{value!r} cannot be split into words: {exc}")
        return self.strings(path, value)

    def list_or_dict(self, path: KeyPath, value: Any, what: str = "entries") -> dict[str, str | None]:
        """``environment``, ``labels``, build ``args``: a mapping, or a list of ``KEY=VALUE``.

        A key without a value (``- DEBUG``, ``DEBUG:``) maps to None: the caller decides
        (environment and build args take it from the interpolation environment).  Numbers and
        booleans become the strings docker compose makes of them (``true``, ``1.5``).
        """
        if value is None:
            return {}
        out: dict[str, str | None] = {}
        if isinstance(value, dict):
            for key, item in value.items():
                if item is None or isinstance(item, str):
                    out[key] = item
                elif isinstance(item, bool):
                    out[key] = "true" if item else "false"
                elif isinstance(item, (int, float)):
                    out[key] = _number_text(item)
                else:
                    self.fail((*path, key), f"must be a string, a number or a boolean, not {show(item)}")
            return out
        if not isinstance(value, list):
            self.fail(path, f"must be a mapping or a list of KEY=VALUE {what}, not {show(value)}")
        for i, item in enumerate(value):
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                item = _number_text(item)
            text = self.string((*path, i), item)
            key, eq, rest = text.partition("=")
            if not key or key != key.rstrip() or key != key.lstrip():
                self.fail((*path, i), f"{text!r} is not KEY=VALUE (a key cannot be empty or have spaces around it)")
            out[key] = rest if eq else None
        return out


def _number_text(value: float) -> str:
    """A YAML number as Go prints it (``1.0`` is ``1``), for values that become strings."""
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
