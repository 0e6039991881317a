"""The Container API's edges, on real containers: diffs of recreated directories, copies in
and out (symlinks, merges, owners, untrusted tars), removed containers, file errors, the
printed shell command and environment checks.

Every test runs rootless and as root; the busybox rootfs (tests/conftest.py) has
``/data/keep.txt`` and ``/data/gone.txt``.
"""

from __future__ import annotations

import io
import os
import shlex
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer import Container, ContainerError, Engine


@pytest.fixture
def box(engine: Engine, busybox_rootfs: Path) -> Iterator[Container]:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        yield c


def _diff(c: Container) -> list[str]:
    return [str(change) for change in c.diff()]


# -- 1. diff below a directory removed and made again ---------------------------------------
def test_diff_lists_what_a_recreated_directory_hides(box: Container) -> None:
    box.exec("rm -rf /data && mkdir /data && echo n > /data/other", check=True)
    # overlayfs made /data opaque: the image's files below it are gone, /data itself changed
    assert _diff(box) == ["C /data", "D /data/gone.txt", "D /data/keep.txt", "A /data/other"]
    box.exec("echo again > /data/keep.txt", check=True)  # the same name again: a changed file
    assert _diff(box) == ["C /data", "D /data/gone.txt", "C /data/keep.txt", "A /data/other"]


def test_diff_of_nested_recreated_directories_and_their_commit(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}") as c:
        c.exec("mkdir -p /data/sub && echo y > /data/sub/y && echo z > /data/sub/z", check=True)
        base = c.commit()
    with engine.run(base) as c:
        assert _diff(c) == []
        # /data/sub is made inside the opaque /data: the image's /data/sub/* are hidden too
        c.exec("rm -rf /data && mkdir -p /data/sub && echo new > /data/sub/new && echo z2 > /data/sub/z", check=True)
        assert c.exec("ls /data/sub").stdout.split() == ["new", "z"]
        assert _diff(c) == ["C /data", "D /data/gone.txt", "D /data/keep.txt", "C /data/sub",
                            "A /data/sub/new", "D /data/sub/y", "C /data/sub/z"]
        c.exec("rm -rf /data", check=True)  # the whole directory deleted: one entry, as before
        assert _diff(c) == ["D /data"]
        c.exec("mkdir /data && echo n > /data/other", check=True)
        again = c.commit()
    with engine.run(again) as c:  # the commit keeps the deletions
        assert c.exec("ls -A /data").stdout.split() == ["other"]
        assert _diff(c) == []


def test_diff_of_a_recreated_directory_of_the_host_image(engine: Engine) -> None:
    """The ``host`` image's directories are the host's own, under the layers: a recreated one
    hides the host's entries.  The running Python's prefix is one, writable rootless too."""
    prefix = os.path.realpath(sys.prefix)
    with engine.run("host") as c:
        assert any(prefix == h or prefix.startswith(h.rstrip("/") + "/") for h in c.image.host_dirs)
        before = sorted(os.listdir(f"{prefix}/bin"))
        c.exec(f"rm -rf {prefix}/bin && mkdir {prefix}/bin && echo > {prefix}/bin/zz-new", check=True)
        found = [line for line in _diff(c) if line.split(" ", 1)[1].startswith(f"{prefix}/bin")]
    expected = [f"D {prefix}/bin/{name}" for name in before] + [f"A {prefix}/bin/zz-new"]
    assert found == [f"C {prefix}/bin", *sorted(expected, key=lambda line: line.split(" ", 1)[1])]
    assert os.path.isdir(f"{prefix}/bin") and sorted(os.listdir(f"{prefix}/bin")) == before  # the host's untouched


def test_diff_of_a_recreated_directory_private_to_another_user(box: Container) -> None:
    """Rootless with a subordinate id range, /data (uid 1000, mode 700) is unreadable on the host:
    the diff is made in the runtime's user namespace, opaque mark included."""
    box.exec("rm -rf /data && mkdir /data && echo n > /data/other", check=True)
    box.exec("chown -R 1000:1000 /data && chmod 700 /data")  # fails harmlessly when only root is mapped
    assert _diff(box) == ["C /data", "D /data/gone.txt", "D /data/keep.txt", "A /data/other"]


# -- 2. copy_out keeps symlinks and never writes outside ------------------------------------
def test_copy_out_keeps_symlinks_as_symlinks(box: Container, tmp_path: Path) -> None:
    box.exec("mkdir -p /w/d && echo f > /w/d/file && ln -s /tmp/elsewhere /w/abs && ln -s ../x /w/d/up "
             "&& ln -s d /w/dirlink && ln /w/d/file /w/hard && echo t > /w/tool && chmod 4775 /w/tool", check=True)
    box.copy_out("/w", tmp_path)
    out = tmp_path / "w"
    assert os.readlink(out / "abs") == "/tmp/elsewhere"
    assert os.readlink(out / "d" / "up") == "../x"
    assert os.readlink(out / "dirlink") == "d"
    assert (out / "d" / "file").read_text() == "f\n"
    assert os.stat(out / "hard").st_ino == os.stat(out / "d" / "file").st_ino
    assert stat.S_IMODE(os.stat(out / "tool").st_mode) == 0o755  # no set-id or group write on the host
    assert not os.path.lexists("/tmp/elsewhere")
    assert os.stat(out / "d" / "file").st_uid == os.geteuid()  # the copies belong to the caller


def _fake_tar(c: Container, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """Make the container's ``sh -c 'tar -c ...'`` print a crafted archive: containers are not trusted.

    ``/bin/sh`` is replaced (busybox's sh runs its own ``tar`` whatever PATH says).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    c.write_bytes("/crafted.tar", buf.getvalue())
    c.exec(["/bin/busybox", "sh", "-c", "rm -f /bin/sh && printf '#!/bin/busybox sh\\ncat /crafted.tar\\n' > /bin/sh "
            "&& chmod 755 /bin/sh"], check=True)


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def test_copy_out_never_writes_through_a_symlink(box: Container, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    _fake_tar(box, [(_member("w", tarfile.DIRTYPE), None),
                    (_member("w/link", tarfile.SYMTYPE, str(outside)), None),
                    (_member("w/link/x"), b"escaped\n")])
    with pytest.raises(ContainerError, match=r"'w/link/x'.*'w/link' on its path is a symlink"):
        box.copy_out("/w", dest)
    assert list(outside.iterdir()) == []
    assert list(dest.iterdir()) == []  # nothing copied, no temporary directory left


def test_copy_out_refuses_parent_references_and_replaces_repeated_names(box: Container, tmp_path: Path) -> None:
    outside = tmp_path / "target.txt"
    outside.write_text("original\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    _fake_tar(box, [(_member("w", tarfile.DIRTYPE), None), (_member("w/../../escape"), b"x")])
    with pytest.raises(ContainerError, match=r"'\.\.'"):
        box.copy_out("/w", dest)
    assert not (tmp_path / "escape").exists() and list(dest.iterdir()) == []
    # A symlink out, a hard link to that symlink, then a file of the symlink's name: neither
    # link may carry the write to the host's file.
    _fake_tar(box, [(_member("w", tarfile.DIRTYPE), None),
                    (_member("w/ln", tarfile.SYMTYPE, str(outside)), None),
                    (_member("w/h", tarfile.LNKTYPE, "w/ln"), None),
                    (_member("w/ln"), b"pwned\n"),
                    (_member("w/h2", tarfile.LNKTYPE, "w/ln"), None)])
    box.copy_out("/w", dest)
    assert outside.read_text() == "original\n"
    assert (dest / "w" / "ln").read_text() == "pwned\n" and not (dest / "w" / "ln").is_symlink()
    assert not os.path.lexists(dest / "w" / "h")  # a hard link to a symlink is left out
    assert (dest / "w" / "h2").read_text() == "pwned\n"


# -- 3. copy_out into what is already there -------------------------------------------------
def test_copy_out_merges_into_an_existing_directory(box: Container, tmp_path: Path) -> None:
    box.exec("mkdir -p /w/sub && echo 1 > /w/a && echo 1 > /w/sub/b", check=True)
    box.copy_out("/w", f"{tmp_path}/")
    (tmp_path / "w" / "mine").write_text("host only\n")
    box.exec("echo 2 > /w/a && echo 2 > /w/sub/b && echo new > /w/sub/c", check=True)
    box.copy_out("/w", f"{tmp_path}/")
    out = tmp_path / "w"
    assert (out / "a").read_text() == "2\n" and (out / "sub" / "b").read_text() == "2\n"
    assert (out / "sub" / "c").read_text() == "new\n"
    assert (out / "mine").read_text() == "host only\n"  # merged, as copy_in and docker cp do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # no temporary directory left
    assert sorted(p.name for p in out.iterdir()) == ["a", "mine", "sub"]
    box.copy_out("/w/a", out / "sub" / "b")  # a file onto a file
    assert (out / "sub" / "b").read_text() == "2\n"
    box.copy_out("/w/a", out / "sub")  # into a directory
    assert (out / "sub" / "a").read_text() == "2\n"
    into = tmp_path / "into"
    (into / "a").mkdir(parents=True)
    with pytest.raises(IsADirectoryError) as info:  # a file never replaces a directory
        box.copy_out("/w/a", into)
    assert info.value.filename == str(into / "a")
    assert sorted(p.name for p in into.iterdir()) == ["a"]
    mine = tmp_path / "mine.txt"
    mine.write_text("mine\n")
    with pytest.raises(NotADirectoryError) as notdir:  # ...nor a directory a file
        box.copy_out("/w", mine)
    assert notdir.value.filename == str(mine) and mine.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["into", "mine.txt", "w"]


def test_copy_out_replaces_a_host_symlink_instead_of_following_it(box: Container, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    box.exec(f"mkdir /w && ln -s {outside} /w/link", check=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    box.copy_out("/w", dest)
    assert os.readlink(dest / "w" / "link") == str(outside)
    box.exec("rm /w/link && mkdir /w/link && echo x > /w/link/x", check=True)
    box.copy_out("/w", dest)
    assert not (dest / "w" / "link").is_symlink() and (dest / "w" / "link" / "x").read_text() == "x\n"
    assert list(outside.iterdir()) == []


def test_copy_out_to_a_missing_directory_names_it(box: Container, tmp_path: Path) -> None:
    box.exec("mkdir /w && echo 1 > /w/a", check=True)
    target = tmp_path / "nope" / "w"
    with pytest.raises(FileNotFoundError) as info:
        box.copy_out("/w", target)
    assert info.value.filename == str(target)
    assert str(tmp_path / "nope") in str(info.value) and "create it first" in str(info.value)
    with pytest.raises(FileNotFoundError) as info:  # "into this directory", which is not there
        box.copy_out("/w", f"{tmp_path}/missing/")
    assert info.value.filename == f"{tmp_path}/missing/"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- 4. copy_in gives the files to root -----------------------------------------------------
def test_copy_in_files_belong_to_root(box: Container, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    if os.geteuid() == 0:
        for p in (src, src / "sub", src / "sub" / "f"):
            os.chown(p, 1001, 1001)
    assert os.stat(src / "sub" / "f").st_uid != 0
    box.exec("mkdir /srv", check=True)
    box.copy_in(src, "/srv")
    box.copy_in(src / "sub" / "f", "/tmp")
    out = box.exec("stat -c '%u:%g %n' /srv/tree /srv/tree/sub /srv/tree/sub/f /tmp/f", check=True).stdout
    assert out.splitlines() == ["0:0 /srv/tree", "0:0 /srv/tree/sub", "0:0 /srv/tree/sub/f", "0:0 /tmp/f"]


# -- 5. a removed container has no changes to commit ----------------------------------------
def test_commit_and_diff_after_remove_are_clear_errors(engine: Engine, busybox_rootfs: Path) -> None:
    for _ in range(3):  # it used to succeed or fail at random
        c = engine.run(f"rootfs:{busybox_rootfs}")
        c.write_text("/f", "x")
        c.remove()
        with pytest.raises(ContainerError, match=f"container {c.id} is removed: its changes are gone"):
            c.commit()
        with pytest.raises(ContainerError, match="is removed: its changes are gone"):
            c.diff()
    with engine.run(f"rootfs:{busybox_rootfs}") as c:  # stopped, not removed: still committable
        c.write_text("/f", "kept")
        c.stop()
        image = c.commit()
    with engine.run(image) as c:
        assert c.read_text("/f") == "kept"


# -- 6. file errors name the container path, once -------------------------------------------
def test_file_errors_name_the_container_path_once(box: Container) -> None:
    with pytest.raises(FileNotFoundError) as info:
        box.read_text("/nope/missing")
    text = str(info.value)
    assert info.value.filename == "/nope/missing" and info.value.errno == 2
    assert text == f"[Errno 2] No such file or directory (in container {box.id}): '/nope/missing'"
    with pytest.raises(IsADirectoryError) as isdir:
        box.read_text("/tmp")
    assert isdir.value.filename == "/tmp" and box.id in str(isdir.value)
    with pytest.raises(FileNotFoundError) as empty:
        box.read_bytes("")
    assert empty.value.filename == ""
    with pytest.raises(FileNotFoundError) as rel:  # relative to the working directory, /
        box.read_text("nope")
    assert rel.value.filename == "/nope"
    with pytest.raises(IsADirectoryError) as wdir:
        box.write_text("/tmp", "x")
    assert wdir.value.filename == "/tmp" and str(wdir.value).count("[Errno") == 1
    with pytest.raises(NotADirectoryError) as notdir:
        box.read_text("/etc/passwd/x")
    assert notdir.value.filename == "/etc/passwd/x"
    assert box.read_text("/data/keep.txt") == "original\n"  # and the container still serves
    assert not box.exists("") and not box.exists("/nope")


# -- 7. the printed shell command works without `minicontainer` on PATH ---------------------
def test_shell_command_uses_this_python(box: Container, tmp_path: Path) -> None:
    box.write_text("/evidence.txt", "look here\n")
    box.keep()
    shell = box.shell_command()
    assert (f"{shlex.quote(sys.executable)} -m pytest_minicontainer run --rm -it --entrypoint /bin/sh "
            f"minicontainer-kept:{box.id}") in shell
    env = {k: v for k, v in os.environ.items() if k != "MINICONTAINER_STORE"}
    env["PATH"] = "/usr/bin:/bin"  # no virtual environment's bin directory
    opened = subprocess.run(shell, shell=True, input="cat /evidence.txt\n", capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    # -t gives the shell a terminal even with piped input: what is typed is echoed
    # the shell has a terminal: it echoes what is typed and shows its prompt before the output
    assert any(line.endswith("look here") for line in opened.stdout.splitlines()), opened.stdout + opened.stderr


def test_a_kept_service_opens_as_a_shell_without_starting_the_service(engine: Engine, busybox_rootfs: Path,
                                                                      tmp_path: Path) -> None:
    """The service (its Entrypoint) left a pid file, as postgres leaves postmaster.pid: the shell
    command opens its files, and the service does not start again."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM rootfs:{busybox_rootfs}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "test -e /tmp/svc.pid && echo SERVICE-REFUSED && exit 1; '
        'echo SERVICE-STARTED; echo $$ > /tmp/svc.pid; exec sleep 600"]\n')
    image = engine.build(context=context)
    try:
        with engine.run(image) as svc:
            svc.exec("while ! test -e /tmp/svc.pid; do sleep 0.05; done", timeout=30, check=True)
            svc.keep()
            shell = svc.shell_command()
        opened = subprocess.run(shell, shell=True, input="cat /tmp/svc.pid; echo shell-$((40+2))\n",
                                capture_output=True, text=True, timeout=120)
        assert "shell-42" in opened.stdout, opened.stdout + opened.stderr
        assert "SERVICE" not in opened.stdout + opened.stderr
        assert opened.returncode == 0
    finally:
        engine.remove(image)


# -- 8. environment variables are checked before they reach the container -------------------
def test_exec_and_spawn_check_environment_names_and_values(box: Container) -> None:
    with pytest.raises(ValueError, match="'A=B'"):
        box.exec("env", env={"A=B": "1"})
    with pytest.raises(ValueError, match="'X' is None"):
        box.exec("env", env={"X": None})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="''"):
        box.spawn("env", env={"": "1"})
    with pytest.raises(ValueError, match="NUL"):
        box.exec("env", env={"V": "a\0b"})
    result = box.exec("echo $PORT-$GOOD", env={"PORT": 8080, "GOOD": "yes"}, check=True)  # type: ignore[dict-item]
    assert result.stdout == "8080-yes\n"
    assert box.exec("echo ${PORT:-unset}").stdout == "unset\n"


def test_file_requests_refuse_fifos_and_devices_without_hanging(box: Container) -> None:
    """Pid 1 serves every file request of the container: a FIFO nobody opens at the other end
    would block it in ``open`` (and the container with it), a read of a device such as
    /dev/zero might never end.  They are refused, with a message that says what it is, and
    pid 1 serves on."""
    box.exec("mkfifo /tmp/fifo", check=True)
    attempts = {"write fifo": lambda: box.write_text("/tmp/fifo", "x"),
                "read fifo": lambda: box.read_text("/tmp/fifo"),
                "read device": lambda: box.read_bytes("/dev/null")}  # not /dev/zero: endless if let through
    errors: dict[str, BaseException | None] = {}

    def attempt_all() -> None:
        for what, attempt in attempts.items():
            try:
                attempt()
                errors[what] = None
            except BaseException as exc:  # reported below
                errors[what] = exc

    worker = threading.Thread(target=attempt_all, daemon=True)
    worker.start()
    worker.join(30)
    # (a stuck pid 1 is killed by the zygote when the container is removed: no hang after this)
    assert not worker.is_alive(), f"a file request hangs pid 1 (done: {sorted(errors)})"
    for what, exc in errors.items():
        assert isinstance(exc, OSError) and "not a file" in str(exc) and box.id in str(exc), (what, exc)
    assert "a FIFO" in str(errors["write fifo"]) and "a character device" in str(errors["read device"])
    assert box.exists("/tmp/fifo")
    assert box.exec("echo still serving").stdout == "still serving\n"


# -- /etc/mtab and /etc/hosts, as Docker's runtime gives them ------------------------------------
def test_etc_mtab_links_to_the_mounts_and_is_no_change(engine: Engine, box: Container, tmp_path: Path) -> None:
    assert box.exec("readlink /etc/mtab", check=True).stdout == "/proc/self/mounts\n"
    hosts = box.read_text("/etc/hosts")  # the busybox image has none: localhost resolves all the same
    assert "127.0.0.1\tlocalhost\n" in hosts and "::1\tlocalhost" in hosts
    mounts = box.exec("mount", check=True).stdout  # busybox mount reads /etc/mtab
    assert " on / type overlay " in mounts and " on /proc type proc " in mounts
    assert box.exec("df /", check=True).stdout.splitlines()[-1].endswith(" /")
    box.exec("echo x > /added", check=True)
    assert _diff(box) == ["A /added"]
    image = box.commit()
    assert not any(os.path.lexists(os.path.join(d, "etc", name))
                   for d in image.layer_dirs for name in ("mtab", "hosts"))
    with engine.run(image, command=()) as again:  # the commit's containers get the link again
        assert again.exec("readlink /etc/mtab", check=True).stdout == "/proc/self/mounts\n"


def test_an_image_with_its_own_etc_mtab_and_hosts_keeps_them(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        c.exec("rm /etc/mtab /etc/hosts && echo 'mine' > /etc/mtab && echo '10.1.2.3 db' > /etc/hosts", check=True)
        own = c.commit()
    with engine.run(own, command=()) as c:
        assert c.exec("cat /etc/mtab /etc/hosts", check=True).stdout == "mine\n10.1.2.3 db\n"
        assert _diff(c) == []
