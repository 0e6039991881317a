"""Read a Containerfile into instructions: continuations, comments, directives, flags, forms.

The parser knows only the file's *syntax*: which instructions exist, how lines join, which
leading ``--flags`` an instruction takes, and whether its arguments are a JSON array (exec
form).  Variable substitution and meaning belong to the planner, because they depend on
ARG/ENV values that only exist while the file is walked.  Every error names the line the
instruction starts on, so an editor can jump there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from ..errors import BuildError
from ._subst import split_words

__all__ = ["SUPPORTED", "Instruction", "exec_form", "heredoc_bodies", "parse", "parse_trigger"]

# instruction -> the flags it accepts (values are checked by the planner)
SUPPORTED: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"network", "mount"}),
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link"}),
    "ENV": frozenset(),
    "ARG": frozenset(),
    "WORKDIR": frozenset(),
    "USER": frozenset(),
    "ENTRYPOINT": frozenset(),
    "CMD": frozenset(),
    "EXPOSE": frozenset(),
    "LABEL": frozenset(),
    "SHELL": frozenset(),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
    "STOPSIGNAL": frozenset(),
    "VOLUME": frozenset(),
    "ONBUILD": frozenset(),
}
# known to Docker, refused here with a reason rather than "unknown"
_REFUSED = {
    "MAINTAINER": "MAINTAINER is deprecated and not supported: use LABEL maintainer=...",
}
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)(?:=(\S*))?$")
# Docker's separator between an instruction, its flags and its arguments (not just " ")
_BLANKS = re.compile(r"[ \t\v\f\r]+")
# a word that makes BuildKit read a heredoc: [fd]<<[-]WORD, WORD without "<" (so not <<<)
_HEREDOC = re.compile(r"\d*<<-?[^<]+")
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Instruction:
    """One instruction: ``args`` is the raw text after the flags (nothing substituted yet)."""

    line: int
    name: str
    args: str
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: tuple[str, ...] | None = None  # the JSON array, when the arguments are one
    # RUN's, COPY's and ADD's heredocs: the lines after the instruction up to each delimiter,
    # delimiters included, exactly as a shell script continues after the command line that opens them
    heredoc: str = ""

    @property
    def text(self) -> str:
        """The instruction as written (joined), for messages and cache keys."""
        flags = "".join(f"--{k}={v} " for k, vs in sorted(self.flags.items()) for v in vs.split("\n"))
        return f"{self.name} {flags}{self.args}".strip()


def _directives(lines: list[str]) -> tuple[str, int]:
    """The escape character and how many leading lines are parser directives."""
    escape = "\\"
    n = 0
    for raw in lines:
        m = _DIRECTIVE.match(raw.strip())
        if not m or not raw.lstrip().startswith("#"):
            break
        key, value = m.group(1).lower(), m.group(2)
        if key == "escape":
            if value not in ("\\", "`"):
                raise BuildError(f"invalid escape directive {value!r} (expected \\ or `)", line=n + 1)
            escape = value
        n += 1
    return escape, n


def _continuation(escape: str) -> re.Pattern[str]:
    """Docker's continuation: the escape character (not itself escaped) ending a line, maybe
    followed by blanks, or alone on a line."""
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")


def _heredoc_delimiters(text: str) -> list[tuple[str, bool]]:
    """The delimiters (and whether ``<<-`` strips leading tabs) of the heredocs an instruction
    line opens, in order; only for RUN, COPY and ADD in shell form."""
    word, *more = _BLANKS.split(text.strip(), maxsplit=1)
    rest = more[0] if more else ""
    if word.upper() not in ("RUN", "COPY", "ADD") or rest.lstrip().startswith("[") or not _starts_heredoc(rest):
        return []
    found = []
    for w in split_words(rest, strict=False):
        if _HEREDOC.fullmatch(w):
            marker = w.lstrip("0123456789")[2:]
            strip = marker.startswith("-")
            found.append((marker.lstrip("-").strip("\"'"), strip))
    return found


def heredoc_bodies(ins: Instruction) -> dict[str, tuple[str, bool, bool]]:
    """COPY/ADD's inline files: ``{name: (content, expand, chomp)}`` from the instruction's heredocs.

    ``name`` is the delimiter (the file's name, as BuildKit has it); ``expand``: the delimiter
    was not quoted, so variables in the content are substituted; ``chomp``: ``<<-`` (leading
    tabs removed from every line).
    """
    lines = ins.heredoc.split("\n") if ins.heredoc else []
    out: dict[str, tuple[str, bool, bool]] = {}
    pos = 0
    for w in split_words(ins.args, strict=False):
        if not _HEREDOC.fullmatch(w):
            continue
        marker = w.lstrip("0123456789")[2:]
        chomp = marker.startswith("-")
        quoted = marker.lstrip("-")[:1] in ("'", '"')
        name = marker.lstrip("-").strip("\"'")
        body: list[str] = []
        while pos < len(lines):
            line = lines[pos]
            pos += 1
            if (line.lstrip("\t") if chomp else line) == name:
                break
            body.append(line)
        content = "".join(f"{line}\n" for line in body)
        if chomp:
            content = "".join(f"{line.lstrip(chr(9))}\n" for line in body)
        out[name] = (content, not quoted, chomp)
    return out


def _logical_lines(text: str) -> tuple[list[tuple[int, str, str]], str]:
    r"""Join continuation lines; drop comments and blank lines. Returns [(first line, text)].

    Joining is Docker's, byte for byte, because it decides what a RUN's shell gets:
    only the escape character (and the blanks after it) is removed, nothing is inserted,
    and the next line keeps its leading white space (``hello\`` + ``world`` is
    ``helloworld``, ``a \`` + ``  b`` is ``a   b``).  Only an instruction's first line
    loses its indentation.  Comment lines and blank lines inside a continuation are
    skipped.  Lines end at ``\n`` only (a stray ``\r`` before it is dropped), as in Docker.
    A line that opens heredocs (``RUN cat <<EOF > /f``) takes the lines up to each delimiter
    as they are (comments and blank lines included): the third item of its entry.
    """
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]  # a byte-order mark, as Docker drops it
    escape, skip = _directives(lines)
    continued = _continuation(escape)
    out: list[tuple[int, str, str]] = []
    current: list[str] | None = None
    start = 0
    taken = 0  # lines up to this number belong to a heredoc already read
    for number, raw in enumerate(lines, start=1):
        if number <= skip or number <= taken:
            continue
        stripped = raw.lstrip()
        if current is None:
            if not stripped or stripped.startswith("#"):
                continue
            start, current, body = number, [], stripped
        elif not stripped or stripped.startswith("#"):
            continue  # comments and empty lines inside a continuation are removed (Docker)
        else:
            body = raw
        joined, n = continued.subn(r"\1", body, count=1)
        current.append(joined)
        if not n:
            logical = "".join(current)
            body_lines: list[str] = []
            for delimiter, strip in _heredoc_delimiters(logical):
                while True:
                    taken = max(taken, number) + 1
                    if taken > len(lines):
                        raise BuildError(f"the heredoc <<{delimiter} is not closed: no line {delimiter!r} follows",
                                         line=start, command=logical)
                    body_lines.append(lines[taken - 1])
                    if (lines[taken - 1].lstrip("\t") if strip else lines[taken - 1]) == delimiter:
                        break
            out.append((start, logical, "\n".join(body_lines)))
            current = None
    if current is not None:
        out.append((start, "".join(current), ""))
    return out, escape


def _starts_heredoc(args: str) -> bool:
    """Whether BuildKit would read the next lines as a heredoc: any unquoted word of the
    (shell-form) arguments is ``<<WORD``, ``<<-WORD``, ``<<"WORD"`` or ``2<<WORD``.  Without
    this check the heredoc's body would be parsed as instructions (``unknown instruction``
    naming a line of the body)."""
    return "<<" in args and any(_HEREDOC.fullmatch(word) for word in split_words(args, strict=False))


def exec_form(args: str, line: int, name: str) -> tuple[str, ...] | None:
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None  # Docker falls back to the shell form for text that is not JSON
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BuildError(f"{name}: the JSON form must be an array of strings", line=line)
    return tuple(value)


def _split_flags(name: str, rest: str, line: int) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    allowed = SUPPORTED[name]
    while rest.startswith("--"):
        word, *more = _BLANKS.split(rest, maxsplit=1)
        tail = more[0] if more else ""
        if word == "--":  # the end of the flags (COPY -- --weird-name /dst), as BuildKit reads it
            rest = tail.lstrip()
            break
        m = _FLAG.match(word)
        if not m:
            raise BuildError(f"{name}: malformed flag {word!r}", line=line)
        flag, value = m.group(1), m.group(2)
        if flag not in allowed:
            hint = f" (accepted: {', '.join('--' + f for f in sorted(allowed))})" if allowed else ""
            raise BuildError(f"{name} does not support the flag --{flag}{hint}", line=line)
        value = "true" if value is None else value
        # --mount may be given several times: kept in order, one per line
        flags[flag] = f"{flags[flag]}\n{value}" if flag == "mount" and flag in flags else value
        rest = tail.lstrip()
    return flags, rest


def parse_trigger(trigger: str, line: int) -> Instruction:
    """The instruction an ``ONBUILD`` stores (its text), read as if it stood on ``line``."""
    word = trigger.strip().split(None, 1)[0].upper() if trigger.strip() else ""
    if word in ("ONBUILD", "FROM", "MAINTAINER"):
        raise BuildError(f"ONBUILD {word} is not allowed (as in Docker)", line=line, command=f"ONBUILD {trigger}")
    try:
        instructions, _ = parse(f"FROM scratch\n{trigger}\n")
    except BuildError as exc:
        raise BuildError(f"ONBUILD {trigger}: {exc}", line=line, command=f"ONBUILD {trigger}") from None
    if len(instructions) != 2:
        raise BuildError(f"ONBUILD takes one instruction, not {trigger!r}", line=line, command=f"ONBUILD {trigger}")
    return replace(instructions[1], line=line)


def parse(text: str) -> tuple[list[Instruction], str]:
    """The instructions of ``text`` and its escape character; BuildError on a syntax error."""
    instructions: list[Instruction] = []
    lines, escape = _logical_lines(text)
    for line, content, heredoc in lines:
        content = content.strip()
        if not content:
            continue  # only escape characters and blanks
        word, *more = _BLANKS.split(content, maxsplit=1)  # FROM<TAB>image is FROM image (Docker)
        name = word.upper()
        rest = more[0].strip() if more else ""
        if name in _REFUSED:
            raise BuildError(_REFUSED[name], line=line, command=content)
        if name not in SUPPORTED:
            raise BuildError(f"unknown instruction {word!r}", line=line, command=content)
        flags, rest = _split_flags(name, rest, line)
        if not rest and name not in ("CMD", "ENTRYPOINT"):
            raise BuildError(f"{name} needs arguments", line=line, command=content)
        form = (exec_form(rest, line, name) if name in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME")
                else None)
        if name == "SHELL" and not form:
            raise BuildError("SHELL needs the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]", line=line)
        instructions.append(Instruction(line, name, rest, flags, form, heredoc))
    if not instructions:
        raise BuildError("the Containerfile has no instructions")
    first = next((i for i in instructions if i.name != "ARG"), None)
    if first is None or first.name != "FROM":
        where = first.line if first is not None else instructions[0].line
        raise BuildError("the first instruction (after ARGs) must be FROM", line=where)
    return instructions, escape
