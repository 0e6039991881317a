"""Helpers for building test images by hand and comparing unpacked trees.

* :class:`TarBuilder` writes layer tars entry by entry, including the hostile ones no tool
  would write (``..``, absolute names, links out of the layer).
* :func:`write_oci_layout` / :func:`write_docker_archive` wrap layers into the two formats.
* :func:`merge_layers` applies layer directories the way overlayfs does (whiteout devices
  delete, the opaque xattr hides lower content), so a store's layers can be compared with
  ``umoci unpack`` without a container; :func:`snapshot` describes a plain tree the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPAQUE = "user.overlay.opaque"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TarBuilder:
    """Build a layer tar in memory, entry by entry."""

    def __init__(self, mtime: int = 1_600_000_000) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.mtime = mtime

    def _info(self, name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.mtime = self.mtime
        return info

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> TarBuilder:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))
        return self

    def symlink(self, name: str, target: str) -> TarBuilder:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> TarBuilder:
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def fifo(self, name: str, mode: int = 0o600) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.FIFOTYPE, mode))
        return self

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o666) -> TarBuilder:
        info = self._info(name, tarfile.CHRTYPE, mode)
        info.devmajor, info.devminor = major, minor
        self._tar.addfile(info)
        return self

    def whiteout(self, name: str) -> TarBuilder:
        d, base = os.path.split(name)
        return self.file(os.path.join(d, ".wh." + base))

    def opaque(self, dirname: str) -> TarBuilder:
        return self.file(os.path.join(dirname, ".wh..wh..opq"))

    def bytes(self, compression: str = "tar") -> bytes:
        self._tar.close()
        raw = self._buf.getvalue()
        if compression == "gzip":
            return gzip.compress(raw, mtime=0)
        if compression == "zstd":
            import zstandard

            return bytes(zstandard.ZstdCompressor().compress(raw))
        return raw


def layer_diff_id(blob: bytes) -> str:
    """The diff id (digest of the uncompressed tar) of a plain/gzip/zstd blob."""
    try:
        if blob[:2] == b"\x1f\x8b":
            return sha256(gzip.decompress(blob))
        if blob[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            return sha256(zstandard.ZstdDecompressor().decompressobj().decompress(blob))
    except Exception:  # a deliberately broken blob: any diff id will do
        pass
    return sha256(blob)


def _media(blob: bytes) -> str:
    base = "application/vnd.oci.image.layer.v1.tar"
    if blob[:2] == b"\x1f\x8b":
        return base + "+gzip"
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return base + "+zstd"
    return base


def image_config(diff_ids: list[str], **config: Any) -> dict[str, Any]:
    return {
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }


@dataclass
class OciImage:
    """What :func:`write_oci_layout` wrote, for assertions and for tampering with."""

    path: Path
    manifest_digest: str
    config_digest: str
    layer_digests: list[str] = field(default_factory=list)

    def blob(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]


def _put(root: Path, data: bytes) -> str:
    digest = sha256(data)
    p = root / "blobs" / "sha256" / digest[7:]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return digest


def write_manifest(root: Path, layers: list[bytes], config: dict[str, Any] | None = None,
                   **cfg: Any) -> tuple[str, bytes, str, list[str]]:
    """Blobs, config and manifest into ``root``; returns (digest, manifest bytes, config digest, layers)."""
    diff_ids = [layer_diff_id(b) for b in layers]
    config = config or image_config(diff_ids, **cfg)
    cbytes = json.dumps(config).encode()
    cdigest = _put(root, cbytes)
    descs, ldigests = [], []
    for blob in layers:
        d = _put(root, blob)
        ldigests.append(d)
        descs.append({"mediaType": _media(blob), "digest": d, "size": len(blob)})
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
                   "size": len(cbytes)},
        "layers": descs,
    }
    mbytes = json.dumps(manifest).encode()
    return _put(root, mbytes), mbytes, cdigest, ldigests


def write_oci_layout(root: Path, layers: list[bytes], ref: str | None = "latest",
                     extra_index_entries: list[dict[str, Any]] | None = None, **cfg: Any) -> OciImage:
    """A one-image OCI layout (plus ``extra_index_entries``) at ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    mdigest, mbytes, cdigest, ldigests = write_manifest(root, layers, **cfg)
    entry: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": mdigest, "size": len(mbytes)}
    if ref:
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
    index_path = root / "index.json"
    empty: dict[str, Any] = {"schemaVersion": 2, "manifests": []}
    index = json.loads(index_path.read_text()) if index_path.exists() else empty
    index["manifests"] = [*index["manifests"], entry, *(extra_index_entries or [])]
    index_path.write_text(json.dumps(index))
    return OciImage(root, mdigest, cdigest, ldigests)


def tar_directory(src: Path, dest: Path) -> Path:
    """``dest`` = an uncompressed tar of the tree at ``src`` (names relative to it)."""
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(src.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(src)), recursive=False)
    return dest


def write_docker_archive(dest: Path, layers: list[bytes], repo_tags: list[str],
                         *, with_oci_layout: bool = False, **cfg: Any) -> str:
    """A ``docker save`` archive (legacy, or Docker 25+ with an embedded OCI layout); config digest."""
    work = dest.with_suffix(".d")
    work.mkdir()
    diff_ids = [layer_diff_id(b) for b in layers]
    cbytes = json.dumps(image_config(diff_ids, **cfg)).encode()
    cdigest = sha256(cbytes)
    if with_oci_layout:
        write_oci_layout(work, layers, ref=repo_tags[0] if repo_tags else None, **cfg)
        config_rel = f"blobs/sha256/{cdigest[7:]}"
        layer_rels = [f"blobs/sha256/{sha256(b)[7:]}" for b in layers]
    else:
        config_rel = f"{cdigest[7:]}.json"
        (work / config_rel).write_bytes(cbytes)
        layer_rels = []
        for b in layers:
            d = work / sha256(b)[7:24]
            d.mkdir(exist_ok=True)
            (d / "layer.tar").write_bytes(b)
            layer_rels.append(f"{d.name}/layer.tar")
    (work / "manifest.json").write_text(json.dumps([{"Config": config_rel, "RepoTags": repo_tags,
                                                     "Layers": layer_rels}]))
    tar_directory(work, dest)
    return cdigest


# -- comparing trees -----------------------------------------------------------------------

Entry = tuple[str, int, str]  # kind, permission bits, link target / content digest / ""


def _describe(path: str, st: os.stat_result) -> Entry:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return ("dir", mode, "")
    if stat.S_ISLNK(st.st_mode):
        return ("symlink", 0, os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            return ("file", mode, hashlib.sha256(f.read()).hexdigest())
    if stat.S_ISFIFO(st.st_mode):
        return ("fifo", mode, "")
    if stat.S_ISCHR(st.st_mode):
        return ("chardev", mode, f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    return ("other", mode, "")


def snapshot(root: Path, *, owners: bool = False) -> dict[str, Any]:
    """``{relative path: (kind, mode, target-or-digest[, uid, gid])}`` for a plain tree."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            desc = _describe(full, st)
            out[rel] = (*desc, st.st_uid, st.st_gid) if owners else desc
    return out


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def merge_layers(layer_dirs: list[str] | tuple[str, ...], *, owners: bool = False) -> dict[str, Any]:
    """The merged view of ``layer_dirs`` (bottom first) as overlayfs would show it."""
    merged: dict[str, Any] = {}

    def drop_below(rel: str) -> None:
        for key in [k for k in merged if k.startswith(rel + "/")]:
            del merged[key]

    for layer in layer_dirs:
        for dirpath, dirnames, filenames in os.walk(layer):
            rel_dir = os.path.relpath(dirpath, layer)
            if rel_dir != "." and _opaque(dirpath):
                drop_below(rel_dir)
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(full)
                if _is_whiteout(st):
                    merged.pop(rel, None)
                    drop_below(rel)
                    continue
                desc = _describe(full, st)
                if desc[0] != "dir" or (rel in merged and merged[rel][0] != "dir"):
                    drop_below(rel)
                merged[rel] = (*desc, st.st_uid, st.st_gid) if owners else desc
    return merged


# -- images made by real tools (umoci, skopeo) ---------------------------------------------

def run(*argv: str | os.PathLike[str]) -> str:
    import subprocess

    proc = subprocess.run([os.fspath(a) for a in argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _rootless() -> list[str]:
    return [] if os.geteuid() == 0 else ["--rootless"]


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> Path:
    run("umoci", "unpack", *_rootless(), "--image", f"{layout}:{tag}", bundle)
    return bundle / "rootfs"


def build_umoci_image(work: Path, busybox: str = "/bin/busybox") -> tuple[Path, str]:
    """A multi-layer OCI image written by umoci; returns (layout, tag).

    Layer 1: busybox with absolute and relative symlinks, setuid/setgid/sticky modes, a hard
    link pair, a fifo, files owned by other ids (as root).  Layer 2: deletions (whiteouts of a
    file and of a directory), a file replaced by a symlink, a directory replaced by a file, a
    new hard link pair, a mode change.  Layer 3: ``umoci insert --opaque`` over /var/cache.
    Layer 4: ``umoci insert --whiteout``.
    """
    layout = work / "layout"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:base")
    bundle = work / "bundle"
    rootfs = umoci_unpack(layout, "base", bundle)
    for d in ("bin", "etc", "tmp", "usr/bin", "var/cache/apt", "opt/app/sub", "old/dir"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copy2(busybox, rootfs / "bin/busybox")
    os.symlink("busybox", rootfs / "bin/sh")
    os.symlink("/bin/busybox", rootfs / "bin/ls")
    os.symlink("../../bin/busybox", rootfs / "usr/bin/env")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home:/bin/sh\n")
    (rootfs / "etc/gone").write_text("deleted in layer 2")
    (rootfs / "etc/replaced").write_text("becomes a symlink")
    (rootfs / "usr/bin/su").write_bytes(b"#!/bin/sh\necho su\n")
    os.chmod(rootfs / "usr/bin/su", 0o4755)
    (rootfs / "usr/bin/wall").write_bytes(b"wall")
    os.chmod(rootfs / "usr/bin/wall", 0o2755)
    os.chmod(rootfs / "tmp", 0o1777)
    os.link(rootfs / "usr/bin/su", rootfs / "usr/bin/su-link")
    os.mkfifo(rootfs / "etc/fifo", 0o640)
    for name in ("apt/a", "apt/b", "old"):
        (rootfs / "var/cache" / name).write_text(name)
    (rootfs / "opt/app/x").write_text("x")
    (rootfs / "opt/app/sub/y").write_text("y")
    (rootfs / "old/dir/file").write_text("in a dir deleted later")
    (rootfs / "etc/private").write_text("secret")
    os.chmod(rootfs / "etc/private", 0o600)
    if os.geteuid() == 0:
        os.chown(rootfs / "etc/private", 1000, 1000)
        os.lchown(rootfs / "bin/ls", 1000, 100)
    run("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:v1", bundle)
    (rootfs / "etc/gone").unlink()
    shutil.rmtree(rootfs / "old")
    (rootfs / "etc/replaced").unlink()
    os.symlink("/etc/passwd", rootfs / "etc/replaced")
    shutil.rmtree(rootfs / "opt/app/sub")
    (rootfs / "opt/app/sub").write_text("was a directory")
    (rootfs / "etc/new").write_text("new in layer 2")
    os.link(rootfs / "etc/new", rootfs / "etc/new-link")
    os.chmod(rootfs / "usr/bin/wall", 0o755)
    run("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:v2", bundle)
    fresh = work / "fresh-cache"
    (fresh / "apt").mkdir(parents=True)
    (fresh / "apt/c").write_text("only this survives")
    run("umoci", "config", "--image", f"{layout}:v2", "--tag", "v3", "--config.cmd", "/bin/sh",
        "--config.env", "HELLO=world", "--config.workingdir", "/tmp")
    run("umoci", "insert", *_rootless(), "--image", f"{layout}:v3", "--opaque", fresh, "/var/cache")
    run("umoci", "insert", *_rootless(), "--image", f"{layout}:v3", "--whiteout", "/opt/app/x")
    return layout, "v3"
