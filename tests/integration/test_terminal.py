"""Terminals: ``exec(..., tty=True)`` and ``minicontainer run -it`` (issue 20, item 3).

The command gets a pseudo-terminal of the container's own devpts as its controlling
terminal; the CLI relays it to the host's terminal in raw mode and keeps its size current.
``script(1)`` and a pty made here play the user's terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer import ExecTimeout


def _cli(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest_minicontainer", "--store", str(store), *args]


def test_exec_on_a_terminal_of_the_containers_own(engine: Any, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        r = c.exec("tty; test -t 0 && test -t 1 && test -t 2 && echo all-three; stty size; ls /dev/pts", tty=True)
        assert r.returncode == 0
        assert r.stderr == ""
        lines = r.stdout.split("\r\n")
        assert lines[:3] == ["/dev/pts/0", "all-three", "24 80"]
        assert lines[3].split() == ["0", "ptmx"]  # the container's own devpts: its terminal and nothing else
        # without tty=True nothing has one
        plain = c.exec("tty")
        assert (plain.returncode, plain.stdout) == (1, "not a tty\n")


def test_exec_terminal_input_status_and_job_control(engine: Any, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        # input is typed: the terminal echoes it, a partial line still reaches the end (two ^D)
        r = c.exec("read line; echo got:$line", tty=True, input="hello\n")
        assert r.stdout == "hello\r\ngot:hello\r\n"
        assert c.exec("cat", tty=True, input="no newline").stdout == "no newlineno newline"
        assert c.exec("exit 3", tty=True).returncode == 3
        # the terminal is the session's controlling terminal: /dev/tty opens it (^C and job
        # control through it: test_run_it_follows_the_window_size_and_passes_keys)
        r = c.exec("echo via-dev-tty > /dev/tty", tty=True)
        assert (r.returncode, r.stdout) == (0, "via-dev-tty\r\n")
        assert c.exec("echo x > /dev/tty").returncode != 0


def test_exec_terminal_timeout_kills_the_command(engine: Any, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        start = time.monotonic()
        with pytest.raises(ExecTimeout) as info:
            c.exec("echo started; sleep 30", tty=True, timeout=1)
        assert time.monotonic() - start < 15
        assert "started" in info.value.stdout
        assert "sleep 30" not in c.exec("ps -o args").stdout


def test_exec_terminal_belongs_to_the_user(engine: Any, busybox_rootfs: Path) -> None:
    if engine.runtime.idmap.kind == "single":
        pytest.skip("needs a subordinate id range for uid 1000 (MINICONTAINER_IDMAP=single maps root only; "
                    "give the user a range in /etc/subuid)")
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        r = c.exec("id -u; stat -c %u $(tty)", tty=True, user="app")
        assert r.stdout.split() == ["1000", "1000"]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1): apt-get install bsdutils")
def test_run_it_under_script(tmp_path: Path, busybox_rootfs: Path, engine: Any) -> None:
    """``run -it`` as a user types it: a shell with a terminal, the status back, our modes restored."""
    run = shlex.join(_cli(tmp_path / "store", "run", "--rm", "-it", f"rootfs:{busybox_rootfs}", "/bin/sh"))
    # stty -g before and after: the host terminal's modes are the same once run returns
    inner = f"stty rows 33 cols 101; stty -g; {run}; echo status=$?; stty -g"
    typed = ["tty", "stty size", "echo $((6*7))", "exit 7"]
    p = subprocess.Popen(["script", "-qec", inner, "/dev/null"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    assert p.stdin is not None
    time.sleep(0.5)  # typed, not pasted ahead: each line once the shell may read it
    for line in typed:
        p.stdin.write(line.encode() + b"\n")
        p.stdin.flush()
        time.sleep(0.3)
    out, _ = p.communicate(timeout=120)
    text = out.decode(errors="replace").replace("\r", "")
    assert "/dev/pts/0\n" in text
    assert "33 101\n" in text
    assert "\n42\n" in text
    assert "status=7\n" in text
    modes = [line for line in text.splitlines() if line.count(":") > 30]
    assert len(modes) == 2 and modes[0] == modes[1], text


def test_run_it_follows_the_window_size_and_passes_keys(tmp_path: Path, busybox_rootfs: Path,
                                                         engine: Any) -> None:
    """A resize of the host's terminal reaches the container's (SIGWINCH); ^C reaches its job."""
    argv = _cli(tmp_path / "store", "run", "--rm", "-it", f"rootfs:{busybox_rootfs}", "/bin/sh")
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child: the CLI on the slave, its controlling terminal
        os.execv(argv[0], argv)
    seen = b""

    def resize(rows: int, cols: int) -> None:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def until(needle: bytes, send: bytes = b"", within: float = 30.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + within
        next_send = 0.0
        while needle not in seen:
            now = time.monotonic()
            assert now < deadline, f"{needle!r} never came; the terminal showed {seen!r}"
            if send and now >= next_send:
                os.write(master, send)
                next_send = now + 1.0
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break

    try:
        resize(20, 70)
        until(b"20 70", b"stty size\n")
        resize(41, 123)
        until(b"41 123", b"stty size\n")
        os.write(master, b"sleep 60\n")
        time.sleep(0.5)
        os.write(master, b"\x03")
        until(b"alive-42", b"echo alive-$((40+2))\n")  # the echo of what is typed does not say 42
        os.write(master, b"exit 4\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 4
    finally:
        os.close(master)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
