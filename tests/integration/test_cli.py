"""The ``minicontainer`` command: check and run, through a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def mc(*args: str, store: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_minicontainer", "--store", str(store), *args],
                          input=input, capture_output=True, text=True, timeout=120)


def test_check_reports_the_host_and_starts_a_container(tmp_path: Path, engine: object) -> None:
    r = mc("check", store=tmp_path / "store")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kernel:" in r.stdout
    assert "id mapping:" in r.stdout
    assert "cgroup" in r.stdout
    assert "[  ok] container:" in r.stdout


def test_run_passes_stdio_env_mounts_and_the_exit_status(tmp_path: Path, busybox_rootfs: Path,
                                                          engine: object) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host")
    r = mc("run", "--rm", "-e", "GREETING=hi", "-v", f"{shared}:/mnt:ro", "-w", "/mnt",
           f"rootfs:{busybox_rootfs}", "sh", "-c", 'cat; echo " $GREETING $(pwd) $(cat in.txt)"; exit 5',
           store=tmp_path / "store", input="piped in")
    assert r.returncode == 5, r.stderr
    assert r.stdout == "piped in hi /mnt from the host\n"
    r = mc("run", "-v", f"{shared}:/mnt:ro", f"rootfs:{busybox_rootfs}", "sh", "-c",
           "touch /mnt/x 2>/dev/null || echo refused", store=tmp_path / "store")
    assert (r.returncode, r.stdout) == (0, "refused\n")
    assert not (shared / "x").exists()


def test_run_missing_command_and_bad_image(tmp_path: Path, busybox_rootfs: Path, engine: object) -> None:
    r = mc("run", f"rootfs:{busybox_rootfs}", "no-such-thing", store=tmp_path / "store")
    assert r.returncode == 127
    assert "no-such-thing" in r.stderr
    r = mc("run", "rootfs:/no/such/dir", "true", store=tmp_path / "store")
    assert r.returncode == 125
    assert "/no/such/dir" in r.stderr


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help(argv: list[str], tmp_path: Path) -> None:
    r = mc(*argv, store=tmp_path)
    assert r.returncode == 0 and "usage: minicontainer" in r.stdout
