"""``.env`` and ``env_file`` files, in the syntax the Compose Specification gives (``05-services.md``,
"Env_file format") and compose-go's ``dotenv`` parser implements.

- ``VAR=VAL``, also ``VAR: VAL`` and ``export VAR=VAL``; spaces around the separator are allowed;
- blank lines and lines starting with ``#`` are skipped; ``VAR=VAL # comment`` ends the value at
  `` #``, but ``VAR=VAL# x`` keeps ``VAL# x``;
- ``VAR`` alone takes VAR's value from the lookup (left unset when it has none); ``VAR=`` is empty;
- ``'single'`` quotes are literal (``\\'`` is a quote); ``"double"`` quotes understand ``\\n``,
  ``\\t``, ``\\r``, ``\\\\``, ``\\"``, ``\\$`` and octal ``\\0NNN`` (three digits); quoted values may span lines;
- unquoted and double-quoted values are interpolated (see ``_interpolate``): a variable is
  looked up first with the caller's lookup, then among the values read before it.

The ``raw`` format of ``env_file`` takes ``VAR=VAL`` lines as they are: no quotes, no escapes,
no interpolation.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ._interpolate import InterpolationError, Lookup, interpolate

__all__ = ["DotenvError", "parse_dotenv"]

_EXPORT = re.compile(r"export[ \t]+")
_ESCAPES = re.compile(r"\\(?:[abfnrtv$\"\\]|0[0-7]{3})")
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"',
           "\\": "\\", "$": "$$"}  # \$ becomes $$: a literal dollar for the interpolation that follows
_SPACE = " \t\v\f\r\x85\xa0"  # white space that is not a line break


class DotenvError(ValueError):
    """A line of an env file that cannot be read; ``line`` is its number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def _unescape(match: re.Match[str]) -> str:
    code = match.group()[1:]
    return chr(int(code[1:], 8)) if code.startswith("0") else _SIMPLE[code]


def _valid_key_char(c: str) -> bool:
    return c.isalnum() or c in "_.-[]"


def parse_dotenv(text: str, lookup: Lookup | None = None, *, into: dict[str, str] | None = None,
                 raw: bool = False, unset: set[str] | None = None) -> dict[str, str]:
    """The variables ``text`` sets, added to ``into`` (returned); DotenvError on a bad line.

    ``unset`` collects variables that interpolation met unset, for the caller's warning.
    """
    out: dict[str, str] = {} if into is None else into

    def resolve(name: str) -> str | None:
        found = lookup(name) if lookup is not None else None
        return found if found is not None else out.get(name)

    text = text.removeprefix("\ufeff")
    if raw:
        return _parse_raw(text, out, resolve)
    p = _Parser(text)
    while p.next_statement():
        key, separator = p.key()
        if separator in ("\n", ""):  # "VAR" alone: inherited from the lookup
            value = resolve(key)
            if value is not None:
                out[key] = value
            continue
        p.skip(_SPACE)
        start_line = p.line
        quote = p.peek()
        if quote in ("'", '"'):
            value = p.quoted(quote)
            if quote == '"':
                value = _interpolated(_ESCAPES.sub(_unescape, value), resolve, unset, start_line)
        else:
            value = p.rest_of_line()
            value = value.split(" #", 1)[0].rstrip()
            value = _interpolated(value, resolve, unset, start_line)
        out[key] = value
    return out


def _interpolated(value: str, resolve: Callable[[str], str | None], unset: set[str] | None, line: int) -> str:
    try:
        return interpolate(value, resolve, unset)
    except InterpolationError as exc:
        raise DotenvError(line, str(exc)) from None


def _parse_raw(text: str, out: dict[str, str], resolve: Callable[[str], str | None]) -> dict[str, str]:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key = _EXPORT.sub("", key.strip(), count=1) if key.strip().startswith("export") else key.strip()
        if not key or not all(_valid_key_char(c) for c in key):
            raise DotenvError(number, f"{key!r} is not a variable name")
        if eq:
            out[key] = value
        elif (found := resolve(key)) is not None:
            out[key] = found
    return out


class _Parser:
    """A cursor over the file's text that counts lines."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.advance()

    def next_statement(self) -> bool:
        """Move to the next key, past white space and comments; False at the end."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos].isspace():
                self.advance()
            if self.pos >= len(self.text):
                return False
            if self.peek() != "#":
                return True
            end = self.text.find("\n", self.pos)
            self.advance((end if end >= 0 else len(self.text)) - self.pos)

    def key(self) -> tuple[str, str]:
        """The variable name and the character that ended it ("=", ":", a newline or "" at the end)."""
        m = _EXPORT.match(self.text, self.pos)
        if m:
            self.advance(m.end() - self.pos)
        start = self.pos
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in "=:\n":
                key = self.text[start:self.pos].rstrip(_SPACE)
                self.advance()
                break
            if c not in _SPACE and not _valid_key_char(c):
                first = self.text[start:].split("\n", 1)[0]
                raise DotenvError(self.line, f"unexpected character {c!r} in variable name {first!r}")
            self.pos += 1
        else:
            key, c = self.text[start:].rstrip(_SPACE), ""
        if not key:
            raise DotenvError(self.line, "a line starts with a separator: no variable name")
        if any(ch in _SPACE for ch in key):
            raise DotenvError(self.line, f"variable name {key!r} cannot contain a space")
        return key, c

    def rest_of_line(self) -> str:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        value = self.text[self.pos:end]
        self.advance(end - self.pos)
        return value

    def quoted(self, quote: str) -> str:
        """The value between quotes (the cursor is on the opening one): an escaped quote is kept
        without its backslash, other backslashes are kept for the double-quote escapes."""
        start_line = self.line
        self.advance()
        chars: list[str] = []
        escaped = False
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.advance()
            if c == quote and not escaped:
                self._after_quote()
                return "".join(chars)
            if c == "\\" and not escaped:
                escaped = True
                continue
            if escaped and c != quote:
                chars.append("\\")
            escaped = False
            chars.append(c)
        raise DotenvError(start_line, f"unterminated {quote}quoted{quote} value")

    def _after_quote(self) -> None:
        """After a closing quote only spaces and a ``# comment`` may follow on the line."""
        self.skip(_SPACE)
        if self.peek() == "#":
            self.rest_of_line()
        elif self.peek() not in ("\n", ""):
            raise DotenvError(self.line, f"unexpected {self.rest_of_line()!r} after the closing quote")
