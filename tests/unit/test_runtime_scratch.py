"""Scratch dirs in the zygote: reused when a container left them untouched, else deleted when idle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_minicontainer.runtime import mounts
from pytest_minicontainer.runtime.messages import ContainerSpec
from pytest_minicontainer.runtime.scratch import KEEP, ScratchDirs, untouched

SPEC: ContainerSpec = {"lowers": ["/layers/a"], "hostname": "h"}
HOST: ContainerSpec = {"lowers": ["/layers/a"], "overlays": [{"target": "/usr", "lowers": ["/usr"]}]}
OWNER = (os.getuid(), os.getgid())


@pytest.fixture
def dirs(tmp_path: Path) -> ScratchDirs:
    return ScratchDirs(str(tmp_path), owner=OWNER)


def made(path: str, spec: ContainerSpec) -> None:
    """What a container's mount plan and overlayfs leave in a scratch dir that nobody wrote."""
    for d in mounts.layout(spec):
        os.makedirs(os.path.join(path, d), exist_ok=True)
        os.chmod(os.path.join(path, d), 0o755)
    for d in mounts.layout(spec):
        if d == "work" or d.startswith("work"):
            os.mkdir(os.path.join(path, d, "work"))


def test_new_dirs_are_made_under_the_root_with_their_layout(dirs: ScratchDirs, tmp_path: Path) -> None:
    cid, path = dirs.new(SPEC)
    assert path == str(tmp_path / cid) and os.path.isdir(path)
    assert dirs.layouts[path] == (mounts.layers_key(SPEC), mounts.layout(SPEC))
    _cid, plain = dirs.new(None)  # a plain spare's: its layout is known only at the hand-over
    assert plain not in dirs.layouts
    dirs.record(plain, HOST)
    assert dirs.layouts[plain][1] == mounts.layout(HOST)


def test_an_untouched_dir_serves_the_next_container_over_the_same_layers(dirs: ScratchDirs) -> None:
    _cid, path = dirs.new(SPEC)
    made(path, SPEC)
    dirs.discard(path, set())
    assert dirs.clean == {mounts.layers_key(SPEC): [path]} and not dirs.trash
    _cid, again = dirs.new(dict(SPEC, hostname="other"))  # type: ignore[arg-type]
    assert again == path
    _cid, other = dirs.new(HOST)  # other layers: a new dir
    assert other != path


def test_a_written_dir_goes_to_the_trash(dirs: ScratchDirs) -> None:
    _cid, path = dirs.new(SPEC)
    made(path, SPEC)
    Path(path, "upper", "file").write_text("written")
    dirs.discard(path, set())
    assert dirs.trash == [path] and not any(dirs.clean.values())
    dirs.tidy()
    assert not os.path.exists(path) and not dirs.trash


def test_a_dir_in_use_or_discarded_twice_is_left_alone(dirs: ScratchDirs) -> None:
    _cid, path = dirs.new(SPEC)
    made(path, SPEC)
    dirs.discard(path, {path})
    assert not dirs.trash and not any(dirs.clean.values())
    dirs.discard(path, set())
    dirs.discard(path, set())
    assert dirs.clean[mounts.layers_key(SPEC)] == [path]


def test_a_dir_of_unknown_layout_or_outside_the_root_is_deleted(dirs: ScratchDirs, tmp_path: Path) -> None:
    _cid, plain = dirs.new(None)
    dirs.discard(plain, set())
    assert dirs.trash == [plain]
    elsewhere = tmp_path / "sub" / "c"
    elsewhere.mkdir(parents=True)
    dirs.layouts[str(elsewhere)] = (mounts.layers_key(SPEC), mounts.layout(SPEC))
    made(str(elsewhere), SPEC)
    dirs.discard(str(elsewhere), set())
    assert dirs.trash[-1] == str(elsewhere)


def test_only_a_few_clean_dirs_are_kept_per_layers(dirs: ScratchDirs) -> None:
    paths = [dirs.new(SPEC)[1] for _ in range(KEEP + 1)]
    for path in paths:
        made(path, SPEC)
        dirs.discard(path, set())
    assert len(dirs.clean[mounts.layers_key(SPEC)]) == KEEP
    assert dirs.trash == paths[KEEP:]


def test_remove_all_takes_the_trash_and_the_root(dirs: ScratchDirs, tmp_path: Path) -> None:
    dirs.new(SPEC)
    dirs.remove_all()
    assert not tmp_path.exists()


@pytest.mark.parametrize("change", ["file", "extra dir", "symlink", "mode", "work file", "missing"])
def test_untouched_sees_every_kind_of_write(tmp_path: Path, change: str) -> None:
    path = str(tmp_path / "c")
    made(path, HOST)
    assert untouched(path, mounts.layout(HOST), OWNER)
    upper = os.path.join(path, "upper")
    if change == "file":
        Path(upper, "usr", "f").write_text("")
    elif change == "extra dir":
        os.mkdir(os.path.join(upper, "etc"))
    elif change == "symlink":
        os.symlink("/", os.path.join(upper, "link"))
    elif change == "mode":
        os.chmod(upper, 0o700)  # a "chmod /" in the container lands on upper itself
    elif change == "work file":
        Path(path, "work0", "work", "f").write_text("")
    else:
        os.rmdir(os.path.join(path, "work0", "work"))
    assert not untouched(path, mounts.layout(HOST), OWNER)


def test_untouched_allows_the_mount_points_an_image_lacked(tmp_path: Path) -> None:
    path = str(tmp_path / "c")
    made(path, SPEC)
    for name in ("proc", "dev"):
        os.mkdir(os.path.join(path, "upper", name), 0o755)
    assert untouched(path, mounts.layout(SPEC), OWNER)
    assert not untouched(path, mounts.layout(SPEC), (OWNER[0] + 1, OWNER[1]))  # another owner: written
    assert not untouched(str(tmp_path / "gone"), mounts.layout(SPEC), OWNER)
