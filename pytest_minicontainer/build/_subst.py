"""Docker's variable substitution and quoting for the instructions that do it.

FROM (with the ARGs declared before the first FROM), COPY, ADD, ENV, LABEL, EXPOSE, USER,
WORKDIR and STOPSIGNAL expand ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:+alt}``, ``${VAR+alt}``, ``${VAR:?message}`` and ``${VAR?message}``; RUN, CMD and
ENTRYPOINT are left alone, because their shell (or nothing, in exec form) does it at run
time, which is exactly what Docker does.  Single quotes stop substitution, double quotes do
not; the escape character makes the next character literal (inside double quotes only before
``"``, ``$`` and itself, as BuildKit's lexer has it: elsewhere there it stays); a lone escape at
the end of the text is dropped.  :func:`words` splits on unquoted white space *before*
expansion, so a value with spaces stays one word (COPY sources, VOLUME paths: BuildKit's parser
splits those before it expands); :func:`process_words` also splits what an unquoted variable
expands to, as BuildKit's ``ProcessWords`` does for EXPOSE.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import BuildError

__all__ = ["expand", "process_words", "split_words", "words"]

_BREAK = "\0"  # a word boundary in _expand's output when it splits (no value holds a NUL)


def split_words(text: str, escape: str = "\\", *, strict: bool = True) -> list[str]:
    """Split on unquoted white space, keeping quotes and escapes for :func:`expand`.

    ``strict=False``: an unterminated quote ends the last word instead of raising (BuildKit
    looks for heredocs that way).
    """
    out: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and quote != "'" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c.isspace():
            if current:
                out.append("".join(current))
                current = []
            i += 1
            continue
        current.append(c)
        i += 1
    if quote and strict:
        raise ValueError(f"unterminated {quote} quote")
    if current:
        out.append("".join(current))
    return out


# BuildKit's special parameters: ``$@``, ``${#}``... name one character (and expand to nothing:
# a Dockerfile has no positional parameters)
_SPECIAL = "@*#?-$!0"


def _name_end(text: str, i: int) -> int:
    """The end of the variable name at ``i``, as BuildKit's lexer reads it: a digit starts a
    name of digits only (``$1x`` is ``$1`` then ``x``), a special parameter is one character."""
    if i < len(text) and text[i].isdigit():
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        return j
    if i < len(text) and text[i] in _SPECIAL:
        return i + 1
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    return j


def _braced(text: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    """Expand ``${...}`` starting after the ``{`` at ``i``; returns (value, index after ``}``)."""
    end = _name_end(text, i)
    name = text[i:end]
    if not name:
        raise ValueError(f"bad substitution at {text[i - 2:]!r}")
    if end < len(text) and text[end] == "}":
        return env.get(name, ""), end + 1
    op = text[end:end + 2] if text[end:end + 1] == ":" else text[end:end + 1]
    if op not in (":-", ":+", ":?", "-", "+", "?"):
        raise ValueError(f"unsupported modifier in ${{{name}{text[end:end + 2]}...}}")
    # the word runs to the matching brace (nested ${...} allowed)
    depth, j = 1, end + len(op)
    while j < len(text):
        if text[j] == escape:
            j += 2
            continue
        if text[j:j + 2] == "${":
            depth += 1
            j += 2
            continue
        if text[j] == "}":
            depth -= 1
            if depth == 0:
                break
        j += 1
    if depth:
        raise ValueError(f"missing }} in ${{{name}...")
    word = _expand(text[end + len(op):j], env, escape, in_braces=True)
    value = env.get(name)
    empty = value is None or (op.startswith(":") and value == "")
    if op.endswith("-"):
        result = word if empty else (value or "")
    elif op.endswith("+"):
        result = "" if empty else word
    else:  # "?": required
        if empty:
            raise ValueError(f"{name}: {word or 'is not set'}")
        result = value or ""
    return result, j + 1


def _unquoted(value: str, split: bool) -> str:
    return "".join(_BREAK if ch.isspace() else ch for ch in value) if split else value


def _expand(text: str, env: Mapping[str, str], escape: str, in_braces: bool = False, split: bool = False,
            quotes: bool = True) -> str:
    """``text`` with its variables substituted and its quotes removed.

    ``split``: unquoted white space, written or expanded, becomes ``_BREAK``.  ``quotes=False``:
    quote characters are ordinary ones (BuildKit's ``SkipProcessQuotes``, for inline files).
    """
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and quote == '"':
            # BuildKit's lexer: in double quotes only ", $ and the escape itself are escaped;
            # before anything else the escape stays (ENV PS1="\u@\h" keeps its backslashes)
            nxt = text[i + 1:i + 2]
            if nxt in ('"', "$", escape):
                out.append(nxt)
                i += 2
            else:
                if nxt:
                    out.append(c)
                i += 1
            continue
        if c == escape and quote != "'":
            if i + 1 < len(text):
                out.append(text[i + 1])
            i += 2  # a lone escape at the end is dropped, as BuildKit's lexer does
            continue
        if quote == "'" and c != "'":
            out.append(c)
            i += 1
            continue
        if c in "\"'" and not in_braces and quotes:
            if not quote:
                quote = c
                i += 1
                continue
            if quote == c:
                quote = ""
                i += 1
                continue
        if c == "$" and i + 1 < len(text):
            if text[i + 1] == "{":
                value, i = _braced(text, i + 2, env, escape)
                out.append(_unquoted(value, split and not quote))
                continue
            end = _name_end(text, i + 1)
            if end > i + 1:
                out.append(_unquoted(env.get(text[i + 1:end], ""), split and not quote))
                i = end
                continue
        out.append(_BREAK if split and not quote and c.isspace() else c)
        i += 1
    if quote:
        raise ValueError(f"unterminated {quote} quote")
    return "".join(out)


def expand(text: str, env: Mapping[str, str], *, line: int | None = None, escape: str = "\\",
           quotes: bool = True) -> str:
    """Substitute variables in one word and remove its quotes; BuildError naming ``line``.

    ``quotes=False``: quotes stay as they are (the content of a COPY heredoc).
    """
    try:
        return _expand(text, env, escape, quotes=quotes)
    except ValueError as exc:
        raise BuildError(f"substitution failed: {exc}", line=line, command=text) from None


def words(text: str, env: Mapping[str, str], *, line: int | None = None, escape: str = "\\") -> list[str]:
    """Split ``text`` into words, then expand each (COPY sources, EXPOSE ports...)."""
    try:
        return [_expand(w, env, escape) for w in split_words(text, escape)]
    except ValueError as exc:
        raise BuildError(f"substitution failed: {exc}", line=line, command=text) from None


def process_words(text: str, env: Mapping[str, str], *, line: int | None = None, escape: str = "\\") -> list[str]:
    """BuildKit's ``ProcessWords``: expand, then split on white space that no quote protects,
    including what unquoted variables expanded to (``EXPOSE $PORTS`` with ``PORTS="80 443"``)."""
    try:
        return [w for w in _expand(text, env, escape, split=True).split(_BREAK) if w]
    except ValueError as exc:
        raise BuildError(f"substitution failed: {exc}", line=line, command=text) from None
