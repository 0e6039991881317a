"""``minicontainer build``: the CLI face of :func:`pytest_minicontainer.build.build`.

Beside the CLI rather than in the build package: it makes an Engine, and the Engine calls into
the build package (``Engine.build``), so the build package never imports the engine at run
time (only its type, in annotations): no import circle.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_build_command", "cmd_build"]


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build
    from .engine import Engine

    build_args: dict[str, str] = {}
    for item in args.build_arg or ():
        key, sep, value = item.partition("=")
        if not sep:  # Docker: --build-arg NAME takes the value from the environment
            if key not in os.environ:
                continue
            value = os.environ[key]
        build_args[key] = value
    secrets: dict[str, str] = {}
    for item in args.secret or ():
        fields = dict(part.partition("=")[::2] for part in item.split(","))
        sid, src = fields.get("id"), fields.get("src") or fields.get("source")
        if not sid or not src:
            print(f"minicontainer build: --secret {item}: give id=NAME,src=FILE", file=sys.stderr)
            return 2
        secrets[sid] = src
    ssh: dict[str, str] = {}
    for item in args.ssh or ():
        sid, sep, socket = item.partition("=")
        if not sep:
            socket = os.environ.get("SSH_AUTH_SOCK", "")
            if not socket:
                print(f"minicontainer build: --ssh {item}: give ID=SOCKET (SSH_AUTH_SOCK is not set)", file=sys.stderr)
                return 2
        ssh[sid] = socket
    with Engine(store=args.store) as engine:
        image = build(engine, args.file, args.context, tag=args.tag, build_args=build_args, target=args.target,
                      network=args.network, no_cache=args.no_cache, secrets=secrets, ssh=ssh,
                      cache_to=_cache_ref(args.cache_to) if args.cache_to else None,
                      cache_from=[_cache_ref(r) for r in args.cache_from] if args.cache_from else None,
                      progress=None if args.quiet or args.progress == "quiet"
                      else (lambda line: print(line, file=sys.stderr, flush=True)))
    print(image.digest)
    return 0


def _cache_ref(text: str) -> str:
    """``REF`` or Docker's ``type=registry,ref=REF``."""
    if "=" not in text.split("/", 1)[0].split(":", 1)[0] and not text.startswith("type="):
        return text
    fields = dict(part.partition("=")[::2] for part in text.split(","))
    if fields.get("type", "registry") != "registry" or not fields.get("ref"):
        raise SystemExit(f"minicontainer build: cache {text!r}: give a registry name, or type=registry,ref=NAME")
    return fields["ref"]


def add_build_command(subparsers: Any) -> None:
    """Register ``build`` on the ``minicontainer`` sub-command parser."""
    p = subparsers.add_parser("build", help="build an image from a Containerfile (layers cached in the store)")
    p.add_argument("-t", "--tag", metavar="NAME:TAG", help="name the image")
    p.add_argument("-f", "--file", metavar="FILE", help="the Containerfile (default: CONTEXT/Containerfile, "
                   "then CONTEXT/Dockerfile)")
    p.add_argument("--build-arg", action="append", metavar="K=V", help="set an ARG (repeatable)")
    p.add_argument("--target", metavar="STAGE", help="build up to this stage")
    p.add_argument("--secret", action="append", metavar="id=NAME,src=FILE",
                   help="a file for RUN --mount=type=secret,id=NAME (repeatable; never in a layer)")
    p.add_argument("--ssh", action="append", metavar="ID[=SOCKET]",
                   help="an SSH agent socket for RUN --mount=type=ssh,id=ID (default: $SSH_AUTH_SOCK; repeatable)")
    p.add_argument("--no-cache", action="store_true", help="run every step even when the cache has it")
    p.add_argument("--cache-to", metavar="REF", help="push every step as a build cache to the registry name REF "
                   "(or type=registry,ref=REF); default $MINICONTAINER_CACHE_TO")
    p.add_argument("--cache-from", action="append", metavar="REF", help="take steps from the build cache REF "
                   "instead of running them (repeatable); default $MINICONTAINER_CACHE_FROM")
    p.add_argument("--network", choices=("default", "slirp", "host", "none"), default="default",
                   help="network of RUN steps (default: a private one with outbound access through slirp4netns, "
                   "no route to the host's loopback; none where slirp4netns cannot run)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image digest")
    p.add_argument("--progress", choices=("plain", "quiet"), default="plain",
                   help="plain (default): each step and every line its RUN writes, as written, on stderr; "
                   "quiet: nothing but the digest")
    p.add_argument("context", help="the build context directory")
    p.set_defaults(func=cmd_build)
