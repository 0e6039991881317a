"""``minicontainer images | import | pull | push | tag | rmi | prune | du``: the store seen from a shell.

Each command is ``cmd_xxx(args, store) -> exit status``; :func:`add_store_commands` declares
them on the CLI's subparsers (``set_defaults(store_command=cmd_xxx)``), and ``cli.py`` calls
``args.store_command(args, Store(root))``.  Output goes to stdout, errors to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from ..errors import ImageError, StoreError
from ..progress import BlobBar, BlobLines, human_size
from ..store import Store, normalise_tag
from ._resolve import resolve
from .host import HOST_REFERENCE

__all__ = ["add_store_commands", "cmd_du", "cmd_images", "cmd_import", "cmd_prune", "cmd_pull", "cmd_push",
           "cmd_rmi", "cmd_tag", "human_size"]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_images(args: argparse.Namespace, store: Store) -> int:
    """List stored images, one line per tag (untagged ones as ``<none>``)."""
    rows = [["REPOSITORY", "TAG", "IMAGE ID", "LAYERS", "SIZE"]]
    for image in store.list_images():
        size = human_size(store.image_size(image))
        names = image.tags or ("<none>:<none>",)
        for name in names:
            repo, _, tag = name.rpartition(":")
            rows.append([repo, tag, image.short_id, str(len(image.layer_dirs)), size])
    if getattr(args, "quiet", False):
        print("\n".join(dict.fromkeys(r[2] for r in rows[1:])))
    else:
        print(_table(rows))
    return 0


def cmd_import(args: argparse.Namespace, store: Store) -> int:
    """Import REF (any accepted reference) into the store, optionally tagging it."""
    if args.reference.strip() == HOST_REFERENCE:
        # The host image is not content in the store but the live host, seen through overlays
        # (and made for the Python that runs the command): there is nothing to import, and a
        # tag would pretend to a snapshot that a later run would not see.
        if args.tag:
            print(f"minicontainer import: '{HOST_REFERENCE}' is built in (the host's own system, not a copy) and "
                  f"cannot be tagged; use it by its name: minicontainer run {HOST_REFERENCE} CMD... (image=\"host\" "
                  "in Python)", file=sys.stderr)
            return 1
        print(f"'{HOST_REFERENCE}' is built in and needs no import: minicontainer run {HOST_REFERENCE} CMD...")
        return 0
    start = time.monotonic()
    try:
        image = resolve(store, args.reference, pull="never")  # fetching from a registry is `pull`
        if image.digest.startswith("sha256:") and not store.has_image(image.digest):
            store.save_image(image)  # rootfs directories are not recorded until imported
        for tag in args.tag or ():
            store.tag(normalise_tag(tag), image.digest)
    except (ImageError, StoreError, ValueError) as exc:
        print(f"minicontainer import: {exc}", file=sys.stderr)
        return 1
    tags = ", ".join(store.load_image(image.digest).tags) or "untagged"
    print(f"{image.digest} ({tags}; {len(image.layer_dirs)} layers, {time.monotonic() - start:.2f}s)")
    return 0


@contextlib.contextmanager
def _blob_progress(verb: str) -> Iterator[BlobBar | BlobLines]:
    """On a terminal a bar per blob, redrawn; otherwise (a CI log) a few plain lines per blob."""
    bar = BlobBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        yield bar or BlobLines(lambda line: print(line, file=sys.stderr, flush=True), verb=verb)
    finally:
        if bar is not None:
            bar.finish()


def cmd_pull(args: argparse.Namespace, store: Store) -> int:
    """Pull REF from its registry (always asks the registry; downloads only missing blobs)."""
    from .registry import pull_image

    start = time.monotonic()
    try:
        with _blob_progress("downloading") as progress:
            image = pull_image(store, args.reference, policy="always", platform=args.platform, progress=progress)
    except (ImageError, StoreError) as exc:
        print(f"minicontainer pull: {exc}", file=sys.stderr)
        return 1
    tags = ", ".join(store.load_image(image.digest).tags) or "untagged"
    print(f"{image.digest} ({tags}; {len(image.layer_dirs)} layers, {time.monotonic() - start:.2f}s)")
    return 0


def cmd_push(args: argparse.Namespace, store: Store) -> int:
    """Push SRC (a tag or digest of the store) to DEST on its registry; prints the manifest digest."""
    from .registry import push_image

    start = time.monotonic()
    try:
        image = store.load_image(args.source)
        with store.in_use(), _blob_progress("uploading") as progress:
            result = push_image(store, image, args.destination, progress=progress)
    except (ImageError, StoreError) as exc:
        print(f"minicontainer push: {exc}", file=sys.stderr)
        return 1
    print(f"{result.reference}: digest: {result.digest} ({result.uploaded} of {result.layers} layers sent,"
          f" {human_size(result.bytes_sent)}, {time.monotonic() - start:.2f}s)")
    return 0


def cmd_tag(args: argparse.Namespace, store: Store) -> int:
    """Name SRC (a tag, digest or id prefix) NAME as well."""
    try:
        store.tag(args.name, store.resolve_digest(args.source))
    except (ImageError, StoreError) as exc:
        print(f"minicontainer tag: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_rmi(args: argparse.Namespace, store: Store) -> int:
    """Remove tags or images; layers are freed by ``prune``."""
    status = 0
    for ref in args.references:
        try:
            for line in store.remove_image(ref):
                print(line)
        except (ImageError, StoreError) as exc:
            print(f"minicontainer rmi: {exc}", file=sys.stderr)
            status = 1
    if status == 0:
        print("run `minicontainer prune` to free the disk space of unused layers")
    return status


def cmd_prune(args: argparse.Namespace, store: Store) -> int:
    """Remove unreferenced layers and blobs and abandoned work directories."""
    cleaner: Any = getattr(args, "run_cleaner", None)
    try:
        freed = store.gc(run_cleaner=cleaner, everything=bool(getattr(args, "all", False)))
    except StoreError as exc:
        print(f"minicontainer prune: {exc}", file=sys.stderr)
        return 1
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0


def cmd_du(args: argparse.Namespace, store: Store) -> int:
    """Disk use of the store, by kind, then by image."""
    usage = store.disk_usage()
    print(f"store: {store.root}")
    print(_table([["KIND", "SIZE"], *([k, human_size(v)] for k, v in usage.items())]))
    images = store.list_images()
    if images:
        print()
        rows = [["IMAGE ID", "TAGS", "SIZE"]]
        rows += [[i.short_id, ",".join(i.tags) or "<none>", human_size(store.image_size(i))] for i in images]
        print(_table(rows))
    return 0


def add_store_commands(subparsers: Any) -> None:
    """Declare the store commands on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("images", help="list images in the store")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.set_defaults(store_command=cmd_images)
    p = subparsers.add_parser("import", help="import an image (oci:, oci-archive:, docker-archive:, rootfs:)")
    p.add_argument("reference", metavar="REF")
    p.add_argument("--tag", "-t", action="append", metavar="NAME:TAG", help="tag the image (repeatable)")
    p.set_defaults(store_command=cmd_import)
    p = subparsers.add_parser("pull", help="pull an image from a registry ([docker://]NAME[:TAG][@DIGEST])")
    p.add_argument("reference", metavar="REF")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this host's")
    p.set_defaults(store_command=cmd_pull)
    p = subparsers.add_parser("push", help="push an image of the store to a registry (blobs it has are not sent)")
    p.add_argument("source", metavar="SRC", help="a tag, digest or image id of the store")
    p.add_argument("destination", metavar="DEST", help="HOST[:PORT]/NAME[:TAG] (credentials as for pull)")
    p.set_defaults(store_command=cmd_push)
    p = subparsers.add_parser("tag", help="give an image of the store another name")
    p.add_argument("source", metavar="SRC", help="a tag, digest or image id of the store")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.set_defaults(store_command=cmd_tag)
    p = subparsers.add_parser("rmi", help="remove image tags or images")
    p.add_argument("references", metavar="REF", nargs="+")
    p.set_defaults(store_command=cmd_rmi)
    p = subparsers.add_parser("prune", help="remove unused layers, blobs, abandoned work dirs and the untagged "
                              "commits of ended sessions")
    p.add_argument("-a", "--all", action="store_true", help="remove every image and tag too: only what running "
                   "sessions use stays, and you can delete what is left")
    p.set_defaults(store_command=cmd_prune)
    p = subparsers.add_parser("du", help="disk use of the store")
    p.set_defaults(store_command=cmd_du)
