"""Each instruction's operands read as BuildKit reads them, for the plan.

ENV/LABEL pairs (and their legacy one-pair form), RUN's argv (shell or exec form, heredocs)
and its ``--mount`` options, HEALTHCHECK's command and durations, EXPOSE's ports, paths made
absolute against WORKDIR.  Pure functions of the text, the substitution environment and the
stages planned so far: ``_plan`` walks the instructions and calls these.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

from ..errors import BuildError
from ..image import HealthCheck
from ._parser import Instruction, exec_form
from ._steps import Stage
from ._subst import expand, process_words, split_words

__all__ = ["DEFAULT_SHELL", "abs_path", "command", "expose", "healthcheck", "pairs", "run_mount"]

DEFAULT_SHELL = ("/bin/sh", "-c")


def pairs(text: str, line: int, name: str, env: Mapping[str, str], escape: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` or the legacy ``K value with spaces`` (ENV/LABEL)."""
    try:
        raw = split_words(text, escape)
    except ValueError as exc:
        raise BuildError(f"{name}: {exc}", line=line, command=f"{name} {text}") from None
    if raw and "=" not in raw[0]:
        # the legacy form, one key and the rest of the line as its value (BuildKit takes it for
        # LABEL too: ``LABEL maintainer foo@bar.com``, MAINTAINER's usual replacement)
        if len(raw) < 2:
            raise BuildError(f"{name} needs KEY=VALUE pairs", line=line, command=f"{name} {text}")
        key, rest = re.split(r"\s+", text.strip(), maxsplit=1)  # raw has two words: there is a blank
        return [(key, expand(rest.strip(), env, line=line, escape=escape))]
    out = []
    for word in raw:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise BuildError(f"{name}: {word!r} is not KEY=VALUE", line=line, command=f"{name} {text}")
        out.append((expand(key, env, line=line, escape=escape), expand(value, env, line=line, escape=escape)))
    return out


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value: str, line: int, flag: str) -> float:
    pos, total = 0, 0.0
    while pos < len(value):
        m = _DURATION.match(value, pos)
        if not m:
            raise BuildError(f"HEALTHCHECK --{flag}={value}: not a duration like 30s or 1m30s", line=line)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not value:
        raise BuildError(f"HEALTHCHECK --{flag} needs a value", line=line)
    return total


def command(ins: Instruction, shell: tuple[str, ...]) -> tuple[str, ...]:
    if ins.exec_form is not None:
        return ins.exec_form
    if ins.heredoc:
        return _heredoc_command(ins, shell)
    return (*shell, ins.args)


_MOUNT_KEYS = {
    "cache": {"type", "target", "id", "sharing", "mode", "ro", "readonly"},
    "bind": {"type", "target", "source", "rw", "readwrite", "from"},
    "tmpfs": {"type", "target", "size"},
    "secret": {"type", "target", "id", "required", "mode"},
    "ssh": {"type", "target", "id", "required", "mode"},
}


def run_mount(spec: str, env: Mapping[str, str], escape: str, workdir: str, line: int,
               command: str, stages: Sequence[Stage] = ()) -> tuple[tuple[str, str], ...]:
    """One ``RUN --mount=`` as sorted (key, value) pairs, checked and completed with defaults.

    BuildKit's types: ``cache`` (a directory kept in the store across builds, by ``id``,
    default the target), ``bind`` (a path of the build context, or with ``from=`` of an
    earlier stage or an image, read-only unless ``rw``, whose writes are then thrown away),
    ``tmpfs`` (an empty directory for the step), ``secret`` (a file given to the build, at
    ``/run/secrets/<id>`` by default; never in a layer or the cache key), ``ssh`` (an SSH
    agent's socket given to the build, at ``/run/buildkit/ssh_agent.0`` with ``SSH_AUTH_SOCK``
    pointing at it).
    """
    fields: dict[str, str] = {}
    for item in expand(spec, env, line=line, escape=escape).split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        fields[key] = value.strip() if sep else "true"
    kind = fields.get("type", "bind")
    fields["type"] = kind
    if kind not in _MOUNT_KEYS:
        raise BuildError(f"RUN --mount=type={kind} is not supported (cache, bind, tmpfs, secret, ssh)", line=line,
                         command=command)
    unknown = sorted(set(fields) - _MOUNT_KEYS[kind])
    if unknown:
        raise BuildError(f"RUN --mount=type={kind}: unknown option(s) {', '.join(unknown)}", line=line,
                         command=command)
    if kind == "ssh":
        fields.setdefault("id", "default")
        fields.setdefault("target", "/run/buildkit/ssh_agent.0")
    if kind == "secret":
        if not fields.get("id") and not fields.get("target"):
            raise BuildError("RUN --mount=type=secret needs id= (or target=)", line=line, command=command)
        fields.setdefault("id", posixpath.basename(fields.get("target", "")))
        fields.setdefault("target", f"/run/secrets/{fields['id']}")
    if not fields.get("target"):
        raise BuildError(f"RUN --mount=type={kind} needs target=", line=line, command=command)
    fields["target"] = abs_path(fields["target"], workdir)
    if kind == "cache":
        fields.setdefault("id", fields["target"])
        fields.setdefault("sharing", "shared")
        if fields["sharing"] not in ("shared", "private", "locked"):
            raise BuildError(f"RUN --mount=type=cache,sharing={fields['sharing']}: not shared, private or locked",
                             line=line, command=command)
    if kind == "bind":
        fields.setdefault("source", ".")
        if "from" in fields:
            known = {st.name for st in stages if st.name} | {str(st.index) for st in stages}
            ref = fields["from"]
            if ref.lower() in known:
                if stages and ref.lower() == (stages[-1].name or str(stages[-1].index)):
                    raise BuildError(f"RUN --mount=type=bind,from={ref} names the stage it is in", line=line,
                                     command=command)
                fields["from"] = ref.lower()
    return tuple(sorted(fields.items()))


def _heredoc_command(ins: Instruction, shell: tuple[str, ...]) -> tuple[str, ...]:
    """A RUN with heredocs, as BuildKit runs it.

    ``RUN <<EOF`` alone: the heredoc is the script (its ``#!`` line, if any, chooses the
    interpreter: it is written to a file and run).  Anything else (``RUN cat <<EOF > /f``,
    ``RUN python3 <<EOF``): the line and the heredocs go to the shell as one script, and the
    shell reads the heredocs as shells do (quoted delimiters, ``<<-``).
    """
    words = ins.args.split()
    if len(words) == 1 and words[0].lstrip("0123456789").startswith("<<"):
        body = ins.heredoc.split("\n")[:-1]  # without its delimiter line
        if words[0].lstrip("0123456789").startswith("<<-"):
            body = [line.lstrip("\t") for line in body]
        script = "\n".join(body) + "\n"
        if not script.startswith("#!"):
            return (*shell, script)
        runner = ('f=$(mktemp) && cat > "$f" <<\'MINICONTAINER_SCRIPT_END\'\n' + script + "MINICONTAINER_SCRIPT_END\n"
                  'chmod +x "$f" && "$f"; s=$?; rm -f "$f"; exit $s')
        return (*shell, runner)
    return (*shell, f"{ins.args}\n{ins.heredoc}")


def healthcheck(ins: Instruction) -> HealthCheck:
    head, *more = re.split(r"\s+", ins.args, maxsplit=1)
    rest = more[0] if more else ""
    if head.upper() == "NONE":
        return HealthCheck(test=("NONE",))
    if head.upper() != "CMD" or not rest.strip():
        raise BuildError("HEALTHCHECK needs NONE or CMD <command>", line=ins.line, command=ins.text)
    rest = rest.strip()
    form = exec_form(rest, ins.line, "HEALTHCHECK")
    test = ("CMD", *form) if form is not None else ("CMD-SHELL", rest)
    f = ins.flags
    retries = f.get("retries", "3")
    if not retries.isdigit():
        raise BuildError(f"HEALTHCHECK --retries={retries}: not a number", line=ins.line)
    return HealthCheck(test=test,
                       interval=_duration(f["interval"], ins.line, "interval") if "interval" in f else 30.0,
                       timeout=_duration(f["timeout"], ins.line, "timeout") if "timeout" in f else 30.0,
                       start_period=_duration(f["start-period"], ins.line, "start-period")
                       if "start-period" in f else 0.0,
                       retries=int(retries))


def expose(ins: Instruction, env: Mapping[str, str], escape: str) -> tuple[str, ...]:
    ports = []
    # split again after expansion: BuildKit takes EXPOSE $PORTS with PORTS="80 443" as two ports
    for word in process_words(ins.args, env, line=ins.line, escape=escape):
        port, _, proto = word.partition("/")
        proto = proto.lower() or "tcp"
        lo, _, hi = port.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("tcp", "udp", "sctp"):
            raise BuildError(f"EXPOSE {word!r}: not PORT[/tcp|udp|sctp]", line=ins.line, command=ins.text)
        ports.append(f"{port}/{proto}")
    return tuple(ports)


def abs_path(path: str, workdir: str) -> str:
    joined = path if path.startswith("/") else posixpath.join(workdir or "/", path)
    norm = posixpath.normpath(joined)
    return "/" + norm.lstrip("/") if norm != "/" else "/"
