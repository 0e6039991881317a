"""Owners of image files, kept as far as the id mapping allows (issue: OCI images and store).

As root every owner is kept; rootless with a subordinate id range (newuidmap) the ids the
range maps are kept too (on the host the files belong to the subordinate ids); with a single
mapping everything belongs to root inside.  Whatever the mapping, the store can delete what
it unpacked: ``rmi`` + ``prune`` leave no layer behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_minicontainer import Engine, RuntimeUnavailable
from tests.imagetools import TarBuilder, tar_directory, write_oci_layout

# path inside -> (uid, gid, mode) as the layer's tar gives them
EXPECTED = {
    "/home/app": (1000, 1000, 0o700),
    "/home/app/secret": (1000, 1000, 0o600),
    "/srv/games": (5, 60, 0o2755),
    "/usr/local/bin/su-ish": (0, 0, 0o4755),
    "/nobody": (65534, 65534, 0o644),
}


def _owners_layer() -> bytes:
    return (TarBuilder()
            .dir("home", 0o755)
            .dir("home/app", 0o700, uid=1000, gid=1000)
            .file("home/app/secret", b"for app only\n", 0o600, uid=1000, gid=1000)
            .dir("srv", 0o755)
            .file("srv/games", b"g\n", 0o2755, uid=5, gid=60)
            .dir("usr/local/bin", 0o755)
            .file("usr/local/bin/su-ish", b"#!/bin/sh\n", 0o4755)
            .file("nobody", b"n\n", 0o644, uid=65534, gid=65534)
            .bytes())


@pytest.fixture
def layout(busybox_rootfs: Path, tmp_path: Path) -> Path:
    base = tar_directory(busybox_rootfs, tmp_path / "base.tar").read_bytes()
    write_oci_layout(tmp_path / "layout", [base, _owners_layer()], ref="owners")
    return tmp_path / "layout"


def _inside(engine: Engine, ref: str) -> dict[str, tuple[int, int, int]]:
    with engine.run(ref) as c:
        out = c.exec(["stat", "-c", "%n %u %g %a", *EXPECTED], check=True).stdout
        if engine.id_mapping.endswith("(single)"):
            assert c.exec(["cat", "/home/app/secret"]).stdout == "for app only\n"  # root inside owns all
        else:
            assert c.exec(["cat", "/home/app/secret"], user="app").stdout == "for app only\n"
            assert c.exec(["cat", "/home/app/secret"], user="1001").returncode != 0
    return {name: (int(u), int(g), int(m, 8)) for name, u, g, m in (line.split() for line in out.splitlines())}


def _commit_private_files(engine: Engine, ref: str, mapped: bool) -> str:
    """Commit a private directory of uid 1000 (root's when 1000 is not mapped); read it back."""
    with engine.run(ref) as c:
        owner = "chown -R 1000:1000 /home/app/new && " if mapped else ""
        c.exec(f"mkdir /home/app/new && echo x > /home/app/new/f && {owner}chmod 700 /home/app/new", check=True)
        assert {"A /home/app/new", "A /home/app/new/f"} <= set(map(str, c.diff()))
        image = c.commit("owners:committed")
    with engine.run(image) as c:
        return c.exec("stat -c '%u %g %a' /home/app/new && cat /home/app/new/f", check=True).stdout


def test_owners_are_kept_as_the_mapping_allows_and_prune_removes_them(layout: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    try:
        with Engine(store=store) as engine:
            ref = f"oci:{layout}:owners"
            seen = _inside(engine, ref)
            kind = engine.runtime.idmap.kind
            uid_lines = engine.runtime.idmap.uid_lines
            image = engine.image(ref)
            layer = Path(image.layer_dirs[-1])
            committed = _commit_private_files(engine, ref, mapped=kind != "single")
    except RuntimeUnavailable as exc:
        pytest.skip(f"containers cannot run on this host: {exc.cause}; to enable: {exc.fix}")
    if kind == "single":  # nothing but root is mapped: squashed, modes kept
        assert seen == {name: (0, 0, mode) for name, (_u, _g, mode) in EXPECTED.items()}
    else:
        assert seen == EXPECTED
        if kind == "range":  # on the host: the subordinate ids the range maps them to
            def host(ns_id: int) -> int:
                return next(out + ns_id - start for start, out, n in uid_lines if start <= ns_id < start + n)

            st = os.lstat(layer / "home" / "app")
            assert (st.st_uid, os.lstat(layer / "nobody").st_uid) == (host(1000), host(65534))
    assert committed == ("1000 1000 700\nx\n" if kind != "single" else "0 0 700\nx\n")
    # the CLI, a new process: rmi + prune delete the layers, subordinate ids and private dirs included
    cli = [sys.executable, "-m", "pytest_minicontainer", "--store", str(store)]
    for args in (["rmi", image.digest, "owners:committed"], ["prune"]):
        r = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    assert not layer.exists()
    assert not any((store / "layers").iterdir())


def test_owners_are_never_given_through_a_symlink(engine: Engine, tmp_path: Path) -> None:
    """A tree with a symlink where a directory is expected cannot redirect a chown outside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("not the tree's\n")
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "g").write_text("in the tree\n")
    (tree / "a").symlink_to(tmp_path / "outside")
    owners = [["a/f", 1000, 1000], ["d/g", 1000, 1000], ["a", 1000, 1000]]
    idmap = engine.runtime.idmap
    if idmap.kind == "single":
        pytest.skip("needs an id besides root in the user namespace: give the user a subuid range "
                    "(usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER) and install uidmap")
    applied = engine.runtime.call("pytest_minicontainer.store._fs", "apply_owners", str(tree), owners)
    host_1000 = next(out + 1000 - start for start, out, n in idmap.uid_lines if start <= 1000 < start + n)
    assert applied == 2
    assert (tree / "d" / "g").stat().st_uid == host_1000 and os.lstat(tree / "a").st_uid == host_1000
    assert (tmp_path / "outside" / "f").stat().st_uid == os.getuid()
    engine.runtime.call("pytest_minicontainer.store._fs", "remove_tree", str(tree))  # the test's tmp stays removable
