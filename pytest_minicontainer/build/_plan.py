"""Plan a build: walk the instructions once, before anything runs.

Everything that does not need a container is decided here: which stages to build (up to the
target), every ARG/ENV substitution, the image config after each step, the argv of each RUN,
and the context files (with the digest of their content) each COPY/ADD takes.  Configs never
depend on what a RUN does, so they can be known up front; that is what lets a missing COPY
source or a bad substitution fail before the first step runs, and what makes a cache key a
pure function of the plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import BuildError, MiniContainerError
from ..image import DEFAULT_PATH, HealthCheck, Image, ImageConfig
from ._context import Source, content_digest, resolve_sources
from ._ignore import IgnoreRules
from ._parser import Instruction, exec_form, heredoc_bodies, parse_trigger
from ._subst import expand, process_words, split_words, words

__all__ = ["Stage", "Step", "make_plan"]

DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass
class Step:
    """One step: ``kind`` is RUN, COPY, ADD, WORKDIR, VOLUME (may create a layer) or META (config only)."""

    line: int
    kind: str
    text: str  # the substituted instruction, part of the cache key
    config: ImageConfig  # the image config after this step
    argv: tuple[str, ...] = ()
    run_env: dict[str, str] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    from_ref: str | None = None  # COPY --from: an earlier stage's name/index, or an image
    from_paths: tuple[str, ...] = ()
    dest: str = ""
    dest_is_dir: bool = False
    chown: str | None = None
    chmod: int | None = None
    content: str = ""  # digest of the context sources
    display: str = ""  # the instruction as written, for progress lines
    network: str = "default"  # RUN --network: default (the build's), none or host
    mounts: tuple[tuple[tuple[str, str], ...], ...] = ()  # RUN --mount: each as sorted (key, value) pairs
    inline: tuple[tuple[str, str], ...] = ()  # COPY/ADD heredocs: (file name, content), after the sources


@dataclass
class Stage:
    index: int
    name: str | None
    line: int
    base: str  # the FROM reference, substituted
    base_stage: int | None
    base_image: Image | None
    steps: list[Step] = field(default_factory=list)
    config: ImageConfig = field(default_factory=ImageConfig)


@dataclass
class _State:
    config: ImageConfig
    args: dict[str, str]
    cmd_set: bool = False

    def subst_env(self) -> dict[str, str]:
        return {**self.args, **self.config.env_dict}


def _pairs(text: str, line: int, name: str, env: Mapping[str, str], escape: str) -> list[tuple[str, str]]:
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


def _command(ins: Instruction, shell: tuple[str, ...]) -> tuple[str, ...]:
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


def _run_mount(spec: str, env: Mapping[str, str], escape: str, workdir: str, line: int,
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
    fields["target"] = _abs_path(fields["target"], workdir)
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


def _healthcheck(ins: Instruction) -> HealthCheck:
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


def _expose(ins: Instruction, env: Mapping[str, str], escape: str) -> tuple[str, ...]:
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


def _abs_path(path: str, workdir: str) -> str:
    joined = path if path.startswith("/") else posixpath.join(workdir or "/", path)
    norm = posixpath.normpath(joined)
    return "/" + norm.lstrip("/") if norm != "/" else "/"


def make_plan(instructions: list[Instruction], escape: str, *, build_args: Mapping[str, str],
              target: str | None, resolve: Callable[[str], Image], context: str,
              ignore: IgnoreRules) -> list[Stage]:
    """The stages to build, up to ``target`` (a stage name or index; default: the last)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    state: _State | None = None
    queue = list(reversed(instructions))  # popped from the end; ONBUILD triggers are pushed there
    while queue:
        ins = queue.pop()
        if ins.name == "FROM":
            if stages:
                stages[-1].config = state.config if state else stages[-1].config
                if target is not None and target.lower() in (stages[-1].name, str(stages[-1].index)):
                    return stages  # later stages are neither planned nor built (nor pulled)
            stage, state = _start_stage(ins, escape, global_args, stages, resolve)
            stages.append(stage)
            # The base's ONBUILD triggers run first, as if written right after FROM; the new
            # image does not pass them on (Docker clears them).
            triggers = state.config.onbuild
            if triggers:
                state.config = state.config.with_changes(onbuild=())
                queue.extend(reversed([parse_trigger(t, ins.line) for t in triggers]))
            continue
        if ins.name == "ARG":
            scope = global_args if state is None else state.args
            env = global_args if state is None else state.subst_env()
            for word in split_words(ins.args, escape):
                key, sep, default = word.partition("=")
                if not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise BuildError(f"ARG {word!r}: not NAME[=default]", line=ins.line, command=ins.text)
                if key in build_args:
                    scope[key] = str(build_args[key])
                elif sep:
                    scope[key] = expand(default, env, line=ins.line, escape=escape)
                elif state is not None and key in global_args:
                    scope[key] = global_args[key]
                # else: declared without a value: it stays unset (not ""), as in Docker, so
                # ${X-default} takes the default and a RUN does not see X at all; a value
                # the scope already has is kept
            if state is not None:
                stages[-1].steps.append(Step(ins.line, "META", ins.text, state.config, display=ins.text))
            continue
        if state is None:  # pragma: no cover - the parser checks this
            raise BuildError("an instruction before FROM", line=ins.line)
        step = _step(ins, escape, state, context, ignore, stages)
        step.display = ins.text
        stages[-1].steps.append(step)
    if stages and state is not None:
        stages[-1].config = state.config
    if target is None:
        return stages
    for stage in stages:
        if stage.name == target.lower() or str(stage.index) == target:
            return stages[: stage.index + 1]
    names = ", ".join(s.name or str(s.index) for s in stages)
    raise BuildError(f"target stage {target!r} is not in the Containerfile (stages: {names})")


def _start_stage(ins: Instruction, escape: str, global_args: dict[str, str], stages: list[Stage],
                 resolve: Callable[[str], Image]) -> tuple[Stage, _State]:
    parts = split_words(ins.args, escape)
    if len(parts) == 3 and parts[1].upper() == "AS":
        name: str | None = parts[2].lower()
    elif len(parts) == 1:
        name = None
    else:
        raise BuildError("FROM needs IMAGE [AS NAME]", line=ins.line, command=ins.text)
    ref = expand(parts[0], global_args, line=ins.line, escape=escape)
    if not ref:
        raise BuildError(f"FROM {parts[0]!r} expands to an empty reference", line=ins.line, command=ins.text)
    if name is not None and any(s.name == name for s in stages):
        raise BuildError(f"duplicate stage name {name!r}", line=ins.line, command=ins.text)
    base_stage = next((s.index for s in stages if s.name == ref.lower() or str(s.index) == ref), None)
    base_image: Image | None = None
    if base_stage is not None:
        config = stages[base_stage].config
    else:
        try:
            base_image = resolve(ref)
        except MiniContainerError as exc:
            raise BuildError(f"FROM {ref}: {exc}", line=ins.line, command=ins.text) from exc
        config = base_image.config
    if "PATH" not in config.env_dict:
        # BuildKit makes sure of a PATH in every stage (so ``ENV PATH $PATH:/x`` over a base
        # that sets none means the default and /x, not ":/x"), and the image keeps it
        config = config.with_changes(env=(*config.env, ("PATH", DEFAULT_PATH)))
    stage = Stage(len(stages), name, ins.line, ref, base_stage, base_image, config=config)
    return stage, _State(config, {})


def _step(ins: Instruction, escape: str, state: _State, context: str, ignore: IgnoreRules,
          stages: list[Stage]) -> Step:
    cfg = state.config
    env = state.subst_env()
    name, line = ins.name, ins.line
    shell = cfg.shell or DEFAULT_SHELL
    if name == "RUN":
        argv = _command(ins, shell)
        run_env = {k: v for k, v in state.args.items() if k not in cfg.env_dict}
        network = ins.flags.get("network")
        if network is not None and network not in ("default", "none", "host"):
            raise BuildError(f"RUN --network={network}: not one of default, none, host", line=line, command=ins.text)
        text = "RUN " + repr(list(argv)) + " " + repr(sorted(run_env.items()))
        if network not in (None, "default"):
            text += f" --network={network}"  # what a step may reach is part of what it made
        mounts = tuple(_run_mount(spec, env, escape, cfg.workdir, line, ins.text, stages)
                       for spec in ins.flags.get("mount", "").split("\n") if spec)
        content = ""
        ssh = [dict(m)["target"] for m in mounts if dict(m)["type"] == "ssh"]
        if ssh and "SSH_AUTH_SOCK" not in cfg.env_dict:
            run_env["SSH_AUTH_SOCK"] = ssh[0]  # as BuildKit sets it for the first ssh mount
        for m in mounts:
            # the cache key: what each mount is, and for a bind of the context what it holds (of
            # an image or stage: its digest, added when it is known); never a secret's content
            # (BuildKit keeps secrets out of the key too)
            text += " --mount=" + ",".join(f"{k}={v}" for k, v in m)
            if dict(m)["type"] == "bind" and "from" not in dict(m):
                srcs = resolve_sources(context, [dict(m)["source"]], ignore, line=line, command=ins.text, kind="RUN")
                content += content_digest(srcs, ignore)
        return Step(line, "RUN", text, cfg, argv=argv, run_env=run_env, network=network or "default",
                    mounts=mounts, content=content)
    if name in ("COPY", "ADD"):
        return _copy_step(ins, escape, state, context, ignore, stages)
    if name == "WORKDIR":
        path = _abs_path(expand(ins.args, env, line=line, escape=escape), cfg.workdir)
        state.config = cfg.with_changes(workdir=path)
        return Step(line, "WORKDIR", f"WORKDIR {path}", state.config, dest=path)
    if name == "VOLUME":
        # Recorded in the config (Docker's "Volumes") and made as directories; no volume is
        # mounted at run time: what a container writes there stays in its writable layer, so
        # commit() keeps a seeded database (Docker's anonymous volume would lose it).
        raw = ins.exec_form if ins.exec_form is not None else tuple(words(ins.args, env, line=line, escape=escape))
        paths = tuple(_abs_path(expand(p, env, line=line, escape=escape) if ins.exec_form is not None else p,
                                cfg.workdir) for p in raw)
        if not paths or any(not p.strip() for p in raw):
            raise BuildError("VOLUME needs one or more paths", line=line, command=ins.text)
        state.config = cfg.with_changes(volumes=tuple(sorted(set(cfg.volumes) | set(paths))))
        return Step(line, "VOLUME", f"VOLUME {list(paths)!r}", state.config, from_paths=paths)
    if name == "ENV":
        current = dict(cfg.env)
        for key, value in _pairs(ins.args, line, "ENV", env, escape):
            current[key] = value  # pairs of one line all see the values from before the line (Docker)
        state.config = cfg.with_changes(env=tuple(current.items()))
    elif name == "LABEL":
        labels = dict(cfg.labels)
        labels.update(_pairs(ins.args, line, "LABEL", env, escape))
        state.config = cfg.with_changes(labels=tuple(sorted(labels.items())))
    elif name == "USER":
        user = expand(ins.args, env, line=line, escape=escape)
        state.config = cfg.with_changes(user=user)
    elif name == "CMD":
        state.config = cfg.with_changes(cmd=_command(ins, shell) if ins.args else None)
        state.cmd_set = True
    elif name == "ENTRYPOINT":
        changes: dict[str, object] = {"entrypoint": _command(ins, shell) if ins.args else None}
        if not state.cmd_set:
            changes["cmd"] = None  # Docker: a new ENTRYPOINT drops the base image's CMD
        state.config = cfg.with_changes(**changes)
    elif name == "EXPOSE":
        state.config = cfg.with_changes(exposed_ports=tuple(sorted(set(cfg.exposed_ports) | set(
            _expose(ins, env, escape)))))
    elif name == "SHELL":
        if not ins.exec_form:
            raise BuildError("SHELL needs a non-empty JSON array", line=line, command=ins.text)
        state.config = cfg.with_changes(shell=ins.exec_form)
    elif name == "HEALTHCHECK":
        state.config = cfg.with_changes(healthcheck=_healthcheck(ins))
    elif name == "ONBUILD":
        trigger = ins.args.strip()
        parse_trigger(trigger, line)  # refused now, not in the child's build
        state.config = cfg.with_changes(onbuild=(*cfg.onbuild, trigger))
    elif name == "STOPSIGNAL":
        state.config = cfg.with_changes(stop_signal=expand(ins.args, env, line=line, escape=escape))
    return Step(line, "META", ins.text, state.config)


def _copy_step(ins: Instruction, escape: str, state: _State, context: str, ignore: IgnoreRules,
               stages: list[Stage]) -> Step:
    cfg = state.config
    env = state.subst_env()
    line = ins.line
    if ins.exec_form is not None:
        parts = [expand(p, env, line=line, escape=escape) for p in ins.exec_form]
    else:
        parts = words(ins.args, env, line=line, escape=escape)
    if len(parts) < 2:
        raise BuildError(f"{ins.name} needs at least one source and a destination", line=line, command=ins.text)
    *srcs, dest_raw = parts
    inline: list[tuple[str, str]] = []
    if ins.heredoc:
        bodies = heredoc_bodies(ins)
        if _inline_name(dest_raw) in bodies:
            raise BuildError(f"{ins.name}: a heredoc cannot be the destination", line=line, command=ins.text)
        for src in list(srcs):
            name = _inline_name(src)
            if name is None or name not in bodies:
                continue
            content, expand_vars, _ = bodies[name]
            if expand_vars:
                content = expand(content, env, line=line, escape=escape, quotes=False)
            inline.append((name, content))
            srcs.remove(src)
    dest = _abs_path(dest_raw, cfg.workdir)
    chown = expand(ins.flags["chown"], env, line=line, escape=escape) if "chown" in ins.flags else None
    chmod = None
    if "chmod" in ins.flags:
        raw = expand(ins.flags["chmod"], env, line=line, escape=escape)
        if not re.fullmatch(r"[0-7]{3,4}", raw):
            raise BuildError(f"{ins.name} --chmod={raw}: only octal modes are supported", line=line,
                             command=ins.text)
        chmod = int(raw, 8)
    step = Step(line, ins.name, "", cfg, dest=dest, chown=chown, chmod=chmod,
                dest_is_dir=dest_raw.endswith("/") or len(srcs) + len(inline) > 1, inline=tuple(inline))
    from_ref = ins.flags.get("from")
    if from_ref is not None and inline:
        raise BuildError(f"{ins.name} --from cannot take a heredoc (an inline file comes from the Containerfile)",
                         line=line, command=ins.text)
    if from_ref is not None:
        from_ref = expand(from_ref, env, line=line, escape=escape)
        known = {s.name for s in stages if s.name} | {str(s.index) for s in stages}
        if from_ref.lower() in known and from_ref.lower() == (stages[-1].name or str(stages[-1].index)):
            raise BuildError(f"{ins.name} --from={from_ref} names the stage it is in", line=line, command=ins.text)
        step.from_ref = from_ref.lower() if from_ref.lower() in known else from_ref
        step.from_paths = tuple(srcs)
        if any(ch in s for s in srcs for ch in "*?["):
            step.dest_is_dir = True
    else:
        for s in srcs:
            if re.match(r"^[a-z][a-z0-9+.-]*://", s) or s.startswith("git@"):
                raise BuildError(f"{ins.name} {s}: remote sources are not supported (only local files; "
                                 "fetch it with RUN)", line=line, command=ins.text)
        step.sources = resolve_sources(context, srcs, ignore, line=line, command=ins.text, kind=ins.name) \
            if srcs else []
        if len(step.sources) + len(inline) > 1:
            step.dest_is_dir = True
        step.content = content_digest(step.sources, ignore)
        if inline:
            step.content += "+" + hashlib.sha256(json.dumps(inline).encode()).hexdigest()
    step.text = (f"{ins.name} from={step.from_ref} paths={list(step.from_paths)} srcs={[s.rel for s in step.sources]} "
                 + (f"inline={[name for name, _ in inline]} " if inline else "")
                 + f"dest={dest} dir={step.dest_is_dir} chown={chown} chmod={chmod}")
    return step


def _inline_name(word: str) -> str | None:
    """The file name of a heredoc word (``<<EOF``, ``<<-"EOF"``), or None for a path."""
    m = re.fullmatch(r"\d*<<-?(.+)", word)
    return m.group(1).strip("\"'") if m else None


def context_root(context: str | os.PathLike[str]) -> str:
    root = os.path.realpath(os.fspath(context))
    if not os.path.isdir(root):
        raise BuildError(f"the build context {os.fspath(context)} is not a directory")
    return root
