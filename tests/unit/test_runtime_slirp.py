"""slirp4netns's start as process plumbing, with a fake binary in its place."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_minicontainer.runtime import slirp

FAKE = """#!{python}
import os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
print("args", *sys.argv[1:], flush=True)
if {ready}:
    os.write(int(args["ready-fd"]), b"1")
    os.read(int(args["exit-fd"]), 1)  # until the zygote closes its end
else:
    print("open(\\"/dev/net/tun\\"): Permission denied", flush=True)
    sys.exit(1)
"""


def fake(tmp_path: Path, ready: bool) -> str:
    path = tmp_path / ("slirp-ok" if ready else "slirp-bad")
    path.write_text(FAKE.format(python=sys.executable, ready=ready))
    path.chmod(0o755)
    return str(path)


def test_a_ready_slirp_runs_until_its_exit_pipe_closes(tmp_path: Path) -> None:
    pid, exit_w = slirp.start(os.getpid(), fake(tmp_path, True), str(tmp_path))
    try:
        log = (tmp_path / f"slirp4netns-{os.getpid()}.log").read_text()
        assert "--disable-host-loopback" in log and f"/proc/{os.getpid()}/ns/net tap0" in log
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        os.close(exit_w)
    _pid, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_a_failing_slirp_is_explained_with_its_last_words_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(slirp.SlirpFailed, match="could not give the container a network") as caught:
        slirp.start(os.getpid(), fake(tmp_path, False), str(tmp_path))
    assert "/dev/net/tun" in str(caught.value) and "chmod 0666 /dev/net/tun" in str(caught.value)
    os.wait()  # the fake, exited


def test_a_missing_binary_or_a_gone_container(tmp_path: Path) -> None:
    with pytest.raises(slirp.SlirpFailed, match="cannot start"):
        slirp.start(os.getpid(), str(tmp_path / "nowhere"), str(tmp_path))
    child = os.fork()
    if child == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(child, 0)
    with pytest.raises(slirp.SlirpFailed, match="exited before its network was set up"):
        slirp.start(child, fake(tmp_path, True), str(tmp_path))
