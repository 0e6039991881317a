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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import BuildError, MiniContainerError
from ..image import DEFAULT_PATH, Image, ImageConfig
from ._context import content_digest, resolve_sources
from ._ignore import IgnoreRules
from ._operands import DEFAULT_SHELL, abs_path, command, expose, healthcheck, pairs, run_mount
from ._parser import Instruction, heredoc_bodies, parse_trigger
from ._steps import Stage, Step
from ._subst import expand, split_words, words

__all__ = ["Stage", "Step", "context_root", "make_plan"]


@dataclass
class _State:
    config: ImageConfig
    args: dict[str, str]
    cmd_set: bool = False

    def subst_env(self) -> dict[str, str]:
        return {**self.args, **self.config.env_dict}


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
        argv = command(ins, shell)
        run_env = {k: v for k, v in state.args.items() if k not in cfg.env_dict}
        network = ins.flags.get("network")
        if network is not None and network not in ("default", "none", "host"):
            raise BuildError(f"RUN --network={network}: not one of default, none, host", line=line, command=ins.text)
        text = "RUN " + repr(list(argv)) + " " + repr(sorted(run_env.items()))
        if network not in (None, "default"):
            text += f" --network={network}"  # what a step may reach is part of what it made
        mounts = tuple(run_mount(spec, env, escape, cfg.workdir, line, ins.text, stages)
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
        path = abs_path(expand(ins.args, env, line=line, escape=escape), cfg.workdir)
        state.config = cfg.with_changes(workdir=path)
        return Step(line, "WORKDIR", f"WORKDIR {path}", state.config, dest=path)
    if name == "VOLUME":
        # Recorded in the config (Docker's "Volumes") and made as directories; no volume is
        # mounted at run time: what a container writes there stays in its writable layer, so
        # commit() keeps a seeded database (Docker's anonymous volume would lose it).
        raw = ins.exec_form if ins.exec_form is not None else tuple(words(ins.args, env, line=line, escape=escape))
        paths = tuple(abs_path(expand(p, env, line=line, escape=escape) if ins.exec_form is not None else p,
                                cfg.workdir) for p in raw)
        if not paths or any(not p.strip() for p in raw):
            raise BuildError("VOLUME needs one or more paths", line=line, command=ins.text)
        state.config = cfg.with_changes(volumes=tuple(sorted(set(cfg.volumes) | set(paths))))
        return Step(line, "VOLUME", f"VOLUME {list(paths)!r}", state.config, from_paths=paths)
    if name == "ENV":
        current = dict(cfg.env)
        for key, value in pairs(ins.args, line, "ENV", env, escape):
            current[key] = value  # pairs of one line all see the values from before the line (Docker)
        state.config = cfg.with_changes(env=tuple(current.items()))
    elif name == "LABEL":
        labels = dict(cfg.labels)
        labels.update(pairs(ins.args, line, "LABEL", env, escape))
        state.config = cfg.with_changes(labels=tuple(sorted(labels.items())))
    elif name == "USER":
        user = expand(ins.args, env, line=line, escape=escape)
        state.config = cfg.with_changes(user=user)
    elif name == "CMD":
        state.config = cfg.with_changes(cmd=command(ins, shell) if ins.args else None)
        state.cmd_set = True
    elif name == "ENTRYPOINT":
        changes: dict[str, object] = {"entrypoint": command(ins, shell) if ins.args else None}
        if not state.cmd_set:
            changes["cmd"] = None  # Docker: a new ENTRYPOINT drops the base image's CMD
        state.config = cfg.with_changes(**changes)
    elif name == "EXPOSE":
        state.config = cfg.with_changes(exposed_ports=tuple(sorted(set(cfg.exposed_ports) | set(
            expose(ins, env, escape)))))
    elif name == "SHELL":
        if not ins.exec_form:
            raise BuildError("SHELL needs a non-empty JSON array", line=line, command=ins.text)
        state.config = cfg.with_changes(shell=ins.exec_form)
    elif name == "HEALTHCHECK":
        state.config = cfg.with_changes(healthcheck=healthcheck(ins))
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
    dest = abs_path(dest_raw, cfg.workdir)
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
