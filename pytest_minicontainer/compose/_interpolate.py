"""Variable interpolation in compose files and ``.env`` files, as docker compose does it.

The Compose Specification (``interpolation.md``) and its reference implementation
(compose-go's ``template`` package) define it:

- ``$VAR`` and ``${VAR}``: the value, or an empty string and a warning when VAR is unset;
- ``${VAR:-default}`` / ``${VAR-default}``: default when unset or empty / only when unset;
- ``${VAR:?message}`` / ``${VAR?message}``: an error naming VAR when unset or empty / unset;
- ``${VAR:+replacement}`` / ``${VAR+replacement}``: replacement when set and non-empty / set
  (not in the spec's text, but compose-go implements them, so real files use them);
- defaults, messages and replacements are interpolated themselves: ``${A:-${B:-x}}``;
- ``$$`` is a literal ``$``; a ``$`` not followed by a name or ``{`` stays as it is;
- names are ``[_a-zA-Z][_a-zA-Z0-9]*``; ``${`` not forming one of the above is an error.

Unlike a shell, nothing else is special: quotes, backslashes and other ``${VAR/x/y}`` forms.
Values are interpolated; mapping keys are not (the spec says so).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._values import Doc
from ._yaml import KeyPath

__all__ = ["InterpolationError", "Lookup", "MissingVariable", "interpolate", "interpolate_tree", "warn_unset"]

Lookup = Callable[[str], "str | None"]

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_FORMS = "${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}"


class InterpolationError(ValueError):
    """A ``${...}`` that is not one of the supported forms."""


class MissingVariable(InterpolationError):
    """``${VAR:?message}`` or ``${VAR?message}`` met an unset (or empty) VAR."""

    def __init__(self, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"required variable {variable} is missing a value{detail}")


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` closing the ``{`` at ``start`` (nested braces counted), or -1."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def interpolate(text: str, lookup: Lookup, unset: set[str] | None = None) -> str:
    """``text`` with its variables substituted; names met unset (no default) are added to ``unset``."""
    out: list[str] = []
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        following = text[j + 1:j + 2]
        if following == "$":
            out.append("$")
            i = j + 2
        elif following == "{":
            end = _closing_brace(text, j + 1)
            if end < 0:
                raise InterpolationError(f"invalid interpolation {text[j:]!r}: no closing brace")
            out.append(_braced(text[j + 2:end], lookup, unset))
            i = end + 1
        elif (m := _NAME.match(text, j + 1)) is not None:
            out.append(_value(m.group(), lookup, unset))
            i = m.end()
        else:
            out.append("$")
            i = j + 1


def _value(name: str, lookup: Lookup, unset: set[str] | None) -> str:
    value = lookup(name)
    if value is None:
        if unset is not None:
            unset.add(name)
        return ""
    return value


def _braced(inner: str, lookup: Lookup, unset: set[str] | None) -> str:
    m = _NAME.match(inner)
    if m is None:
        raise InterpolationError(f"invalid interpolation ${{{inner}}}: expected one of {_FORMS}")
    name, rest = m.group(), inner[m.end():]
    if not rest:
        return _value(name, lookup, unset)
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"invalid interpolation ${{{inner}}}: expected one of {_FORMS}")
    word = rest[len(op):]
    value = lookup(name)
    missing = value is None or (op.startswith(":") and value == "")
    if op.endswith("-"):
        return interpolate(word, lookup, unset) if missing else (value or "")
    if op.endswith("+"):
        return "" if missing else interpolate(word, lookup, unset)
    if missing:
        raise MissingVariable(name, interpolate(word, lookup, unset))
    return value or ""


def interpolate_tree(value: Any, path: KeyPath, lookup: Lookup, doc: Doc,
                     unset: dict[str, KeyPath]) -> Any:
    """Every string value under ``value`` interpolated (keys are left alone, as the spec says).

    A missing required variable is a ComposeError at the key that needs it; each unset
    variable is recorded once in ``unset`` with the first key that used it, so the caller
    warns once per variable.
    """
    if isinstance(value, str):
        names: set[str] = set()
        try:
            result = interpolate(value, lookup, names)
        except MissingVariable as exc:
            doc.fail(path, f"{exc} (set it in env=, in the environment or in the .env file)")
        except InterpolationError as exc:
            doc.fail(path, f"{exc} (write $$ for a literal $)")
        for name in names:
            unset.setdefault(name, path)
        return result
    if isinstance(value, dict):
        return {k: interpolate_tree(v, (*path, k), lookup, doc, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_tree(v, (*path, i), lookup, doc, unset) for i, v in enumerate(value)]
    return value


def warn_unset(doc: Doc, unset: dict[str, KeyPath]) -> None:
    """One warning per variable that was used unset, at the first key that used it."""
    for name, path in unset.items():
        doc.warn(path, f"variable {name} is not set: it is replaced by an empty string (give it a value in env=, "
                       f"the environment or .env, or a default: ${{{name}:-...}})")
