"""``minicontainer compose -f FILE config|up|ps|logs|down``: try a compose file by hand.

``config`` prints the project as it was read (services in start order, their images or builds,
ports, dependencies); ``up`` starts the stack in the foreground and removes everything on ^C
(or SIGTERM).  There is no daemon: the stack lives as long as that ``up``, which keeps a small
state file in its Engine's scratch directory (services, containers, addresses, log files),
so that ``ps``, ``logs`` and ``down`` from another terminal can find it by project name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ComposeError, MiniContainerError

if TYPE_CHECKING:
    from .compose import RunningStack

__all__ = ["add_compose_command"]


def _config(args: argparse.Namespace) -> int:
    from .compose import load

    project = load(args.file, project=args.project_name, profiles=args.profile or ())
    print(f"name: {project.name}\nfile: {project.file}\nservices (in start order):")
    for service in project.plan(args.services or None):
        source = f"build {service.build.context}" if service.build is not None else f"image {service.image}"
        print(f"  {service.name}: {source}")
        for dep in service.depends_on:
            print(f"    depends on {dep.service} ({dep.condition})")
        for port in service.ports:
            print(f"    port {port.target}")
    return 0


def _state(running: RunningStack) -> dict[str, Any]:
    services = {}
    for name, c in running.items():
        status = c.exit_status
        services[name] = {"container": c.id, "state": "running" if c.running else f"exited ({status})",
                          "address": c.ip or "", "ports": {str(p): f"{h}:{hp}" for p, (h, hp) in c.ports.items()},
                          "log": str(c.scratch / "log")}
    return {"pid": os.getpid(), "project": running.project.name, "services": services}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def _up(args: argparse.Namespace) -> int:
    from .engine import Engine

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Engine(store=args.store) as engine:
            stack = engine.compose(args.file, project=args.project_name, profiles=args.profile or ())
            with stack.up(args.services or None) as running:
                state_file = engine.runtime.scratch / f"compose-{stack.project.name}.json"
                for name, c in running.items():
                    ports = ", ".join(f"{p} -> {h}:{hp}" for p, (h, hp) in c.ports.items())
                    print(f"{name}: container {c.id}, {c.ip or c.network}" + (f", ports {ports}" if ports else ""),
                          flush=True)
                print(f"up: project {stack.project.name}; ^C (or `minicontainer compose -p {stack.project.name} "
                      "down`) stops and removes it", flush=True)
                while not stop.is_set():  # the state others read (ps, logs, down), kept current
                    _write_state(state_file, _state(running))
                    stop.wait(1)
                state_file.unlink(missing_ok=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _find(args: argparse.Namespace) -> dict[str, Any]:
    """The state of the running ``up`` of this project (named by -p, or read from the file)."""
    from .paths import default_store_path

    name = args.project_name
    if name is None:
        from .compose import load

        name = load(args.file).name
    store = Path(args.store) if args.store else default_store_path()
    for path in sorted((store / "run").glob(f"*/compose-{name}.json")):
        with contextlib.suppress(OSError, ValueError):
            state: dict[str, Any] = json.loads(path.read_text())
            if _alive(int(state["pid"])):
                return state
    raise ComposeError(f"no stack of project {name!r} is up (start one with `minicontainer compose up`, which "
                       "runs in the foreground: there is no daemon to keep a stack)")


def _ps(args: argparse.Namespace) -> int:
    state = _find(args)
    rows = [["SERVICE", "CONTAINER", "STATE", "ADDRESS", "PORTS"]]
    for name, s in state["services"].items():
        rows.append([name, s["container"], s["state"], s["address"],
                     ", ".join(f"{p} -> {a}" for p, a in s["ports"].items())])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _logs(args: argparse.Namespace) -> int:
    state = _find(args)
    for name, s in state["services"].items():
        if args.services and name not in args.services:
            continue
        with contextlib.suppress(OSError):
            for line in Path(s["log"]).read_text(errors="replace").splitlines():
                print(f"{name} | {line}")
    return 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie its parent has not reaped yet has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _down(args: argparse.Namespace) -> int:
    state = _find(args)
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not _alive(pid):
            print(f"down: project {state['project']} removed")
            return 0
        time.sleep(0.05)
    raise ComposeError(f"the `up` of project {state['project']} (pid {pid}) did not end within 60s")


def cmd_compose(args: argparse.Namespace) -> int:
    actions = {"config": _config, "up": _up, "ps": _ps, "logs": _logs, "down": _down}
    try:
        return actions[args.action](args)
    except (ComposeError, MiniContainerError) as exc:
        print(f"minicontainer compose: {exc}", file=sys.stderr)
        return 1


def add_compose_command(subparsers: Any) -> None:
    """Register ``compose`` on the ``minicontainer`` sub-command parser."""
    p = subparsers.add_parser("compose", help="read (config), start in the foreground (up), look at (ps, logs) "
                              "or stop (down) a compose file's stack")
    p.add_argument("-f", "--file", default=".", help="the compose file or its directory (default: .)")
    p.add_argument("-p", "--project-name", default=None, help="the project's name (default: from the file)")
    p.add_argument("--profile", action="append", help="enable a profile (repeatable)")
    p.add_argument("action", choices=("config", "up", "ps", "logs", "down"))
    p.add_argument("services", nargs="*", help="only these services (and what they depend on)")
    p.set_defaults(func=cmd_compose)
