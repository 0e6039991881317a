"""The content-addressed store: layout, layers, tags, images, GC, locking and disk-full errors."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_minicontainer.errors import ImageNotFound, StoreError
from pytest_minicontainer.image import Image, ImageConfig
from pytest_minicontainer.store import Store, normalise_tag

REPO = Path(__file__).resolve().parents[2]


def make_layer(store: Store, files: dict[str, bytes], layer_id: str | None = None) -> tuple[str, Path]:
    tmp = store.new_tmp_dir("test-")
    for name, data in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    return store.finish_layer(tmp, layer_id)


def save(store: Store, digest_char: str, *layers: tuple[str, Path], tags: tuple[str, ...] = ()) -> Image:
    image = Image(digest="sha256:" + digest_char * 64, config=ImageConfig(cmd=("sh",), env=(("A", "1"),)),
                  layers=tuple(lid for lid, _ in layers), layer_dirs=tuple(str(p) for _, p in layers),
                  tags=tags)
    store.save_image(image)
    return image


def test_layout_is_created(store: Store) -> None:
    for sub in ("blobs/sha256", "layers", "images", "tmp", "run", "locks"):
        assert (store.root / sub).is_dir()
    assert store.run_dir == store.root / "run"
    Store(store.root)  # reopening is fine


def test_finish_layer_is_content_addressed_and_deduplicated(store: Store) -> None:
    lid1, p1 = make_layer(store, {"a": b"1", "d/b": b"2"})
    lid2, p2 = make_layer(store, {"d/b": b"2", "a": b"1"})
    assert lid1 == lid2 and p1 == p2
    assert lid1.startswith("sha256:") and p1 == store.layer_dir(lid1)
    assert (p1 / "d/b").read_bytes() == b"2"
    lid3, _ = make_layer(store, {"a": b"changed", "d/b": b"2"})
    assert lid3 != lid1
    assert list((store.root / "tmp").iterdir()) == []  # duplicates discarded, owner locks gone


def test_tree_digest_covers_modes_links_and_opaque(store: Store) -> None:
    def tree(mode: int, link: str, opaque: bool) -> str:
        tmp = store.new_tmp_dir("t-")
        (tmp / "f").write_bytes(b"x")
        os.chmod(tmp / "f", mode)
        os.symlink(link, tmp / "l")
        (tmp / "d").mkdir()
        if opaque:
            os.setxattr(tmp / "d", "user.overlay.opaque", b"y")
        from pytest_minicontainer.store._treehash import tree_digest

        digest = tree_digest(tmp)
        store.discard_tmp(tmp)
        return digest

    base = tree(0o644, "/a", False)
    assert tree(0o644, "/a", False) == base
    assert len({base, tree(0o755, "/a", False), tree(0o644, "/b", False), tree(0o644, "/a", True)}) == 4


def test_save_load_tag_and_list(store: Store) -> None:
    layer = make_layer(store, {"a": b"1"})
    image = save(store, "a", layer, tags=("docker.io/library/alpine",))
    loaded = store.load_image("alpine:latest")
    assert loaded.digest == image.digest
    assert loaded.config == image.config
    assert loaded.layer_dirs == (str(layer[1]),)
    assert loaded.tags == ("alpine:latest",)
    assert loaded.reference == "alpine:latest"
    assert store.load_image(image.digest).digest == image.digest
    assert store.load_image("a" * 12).digest == image.digest  # short id
    assert store.load_image("alpine@" + image.digest).digest == image.digest
    store.tag("localhost:5000/team/app:dev", image.digest)
    both = ("alpine:latest", "localhost:5000/team/app:dev")
    assert store.load_image("localhost:5000/team/app:dev").tags == both
    assert [i.digest for i in store.list_images()] == [image.digest]
    # layer dirs are stored relative to the root: the store can be moved
    assert '"layers/' in (store.root / "images" / f"{'a' * 64}.json").read_text()


def test_load_unknown_raises_image_not_found(store: Store) -> None:
    with pytest.raises(ImageNotFound, match="not in the store"):
        store.load_image("nope:1")
    with pytest.raises(ImageNotFound):
        store.load_image("sha256:" + "0" * 64)
    with pytest.raises(ImageNotFound):
        store.tag("x:y", "sha256:" + "0" * 64)


@pytest.mark.parametrize(("name", "norm"), [
    ("alpine", "alpine:latest"), ("alpine:3.19", "alpine:3.19"), ("docker.io/library/debian:12", "debian:12"),
    ("docker.io/me/app", "me/app:latest"), ("localhost:5000/app", "localhost:5000/app:latest"),
    ("quay.io/x/y:z", "quay.io/x/y:z"),
])
def test_normalise_tag(name: str, norm: str) -> None:
    assert normalise_tag(name) == norm


def test_normalise_tag_rejects_bad_names() -> None:
    for bad in ("UPPER", "a b", "", "x@sha256:00"):
        with pytest.raises(ValueError):
            normalise_tag(bad)


def test_rmi_by_tag_and_by_digest(store: Store) -> None:
    layer = make_layer(store, {"a": b"1"})
    image = save(store, "b", layer, tags=("one:1", "two:2"))
    assert store.remove_image("one:1") == ["Untagged: one:1"]
    assert store.load_image(image.digest).tags == ("two:2",)
    assert store.remove_image("two:2")[-1] == f"Deleted: {image.digest}"
    with pytest.raises(ImageNotFound):
        store.load_image(image.digest)
    image = save(store, "c", layer, tags=("three:3",))
    assert store.remove_image(image.digest) == ["Untagged: three:3", f"Deleted: {image.digest}"]


def test_gc_removes_unreferenced_layers_blobs_and_keeps_used_ones(store: Store) -> None:
    used = make_layer(store, {"used": b"1"})
    unused = make_layer(store, {"unused": b"x" * 100_000})
    blob = store.put_blob(b'{"kept": true}')
    orphan = store.put_blob(b'{"orphan": true}')
    image = Image(digest="sha256:" + "d" * 64, layers=(used[0],), layer_dirs=(str(used[1]),))
    store.save_image(image, blobs=[blob])
    freed = store.gc()
    assert freed >= 100_000
    assert used[1].is_dir() and not unused[1].exists()
    assert store.blob_path(blob).exists() and not store.blob_path(orphan).exists()
    assert store.load_image(image.digest).layer_dirs == (str(used[1]),)


def test_gc_calls_the_run_cleaner(store: Store) -> None:
    seen: list[Path] = []

    def cleaner(run_dir: Path) -> int:
        seen.append(run_dir)
        return 7

    assert store.gc(run_cleaner=cleaner) == 7
    assert seen == [store.run_dir]


def test_gc_removes_tmp_dirs_of_dead_processes_only(store: Store) -> None:
    mine = store.new_tmp_dir("live-")
    (mine / "f").write_text("x")
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pytest_minicontainer.store import Store
        tmp = Store({str(store.root)!r}).new_tmp_dir("dying-")
        (tmp / "half-a-layer").write_text("x")
        os.chmod(tmp, 0o500)  # a read-only dir inside must not stop the cleanup
        print(tmp, flush=True)
        time.sleep(60)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        dying = Path(proc.stdout.readline().strip())
        assert dying.is_dir()
        store.gc()
        assert dying.is_dir()  # its owner is alive: keep
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store.gc()
    assert not dying.exists()
    assert not Path(str(dying) + ".owner").exists()
    assert (mine / "f").read_text() == "x"  # this process's own tmp dir is kept
    store.discard_tmp(mine)
    assert list((store.root / "tmp").iterdir()) == []


def test_gc_waits_for_imports_then_gives_up(store: Store) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pytest_minicontainer.store import Store
        with Store({str(store.root)!r}).in_use():
            print("in use", flush=True)
            time.sleep(60)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "in use"
            with pytest.raises(StoreError, match="busy"):
                store.gc(wait=0.2)
        finally:
            proc.kill()
            proc.wait()
    store.gc(wait=5)


def test_disk_full_is_a_store_error_with_the_fix(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:  # undone before the store fixture empties the store
        patch.setattr(os, "replace", full)
        with pytest.raises(StoreError, match=r"disk is full.*minicontainer prune"):
            store.put_blob(b"data")
        tmp = store.new_tmp_dir("x-")
        patch.setattr(os, "rename", full)
        with pytest.raises(StoreError, match=r"disk is full.*layers"):
            store.finish_layer(tmp, "sha256:" + "e" * 64)


def test_store_root_unwritable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        root = blocker / "store"  # a path under a regular file cannot be created, even by root
        expected = f"{blocker} is not a directory"
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        root = ro / "store"
        expected = "cannot create the image store"
    with pytest.raises(StoreError, match=expected):
        Store(root)


def test_disk_usage(store: Store) -> None:
    make_layer(store, {"a": b"x" * 50_000})
    usage = store.disk_usage()
    assert usage["layers"] >= 50_000
    assert usage["total"] >= usage["layers"]


def test_gc_removes_half_written_files_of_dead_writers(store: Store) -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait()
    dead = store.root / "images" / f".{'f' * 64}.json.{proc.pid}.tmp"
    live = store.root / "images" / f".{'f' * 64}.json.{os.getpid()}.tmp"
    dead.write_text("{")
    live.write_text("{")
    store.gc()
    assert not dead.exists() and live.exists()


def test_the_stores_directories_are_the_owners_alone(tmp_path: Path) -> None:
    """Layers and writable layers hold set-user-ID programs of images and tests: no other user
    may reach them (as root, that would run them as root).  An older, open store is closed."""
    root = tmp_path / "store"
    Store(root)
    names = ["run", "layers", "tmp", "sources", "images", "locks", "blobs/sha256"]
    assert {n: oct((root / n).stat().st_mode & 0o777) for n in names} == {n: "0o700" for n in names}
    (root / "layers").chmod(0o755)
    Store(root)
    assert (root / "layers").stat().st_mode & 0o777 == 0o700
