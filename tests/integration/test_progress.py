"""Pulls and builds say what they do (issue 20, item 4): ``engine.image(progress=)``,
``engine.build(progress=)``, the engine's one line per image (``announce``) and
``minicontainer pull`` (plain lines in a log, a bar on a terminal).

Images come from Debian's docker-registry on 127.0.0.1, pushed with skopeo.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_minicontainer import Engine
from tests.registry_tools import Registry, gz_layer, push, write_layout


def _push(registry: Registry, tmp_path: Path, name: str) -> str:
    """A two-layer image: a small one and 3 MB that do not compress (several reads)."""
    layers = [gz_layer({"small.txt": b"small\n"}), gz_layer({"big.bin": os.urandom(3_000_000)})]
    write_layout(tmp_path / name, layers, ref="t", Cmd=["/big.bin"])
    ref = f"{registry.address}/test/{name}:v1"
    push(tmp_path / name, "t", ref)
    return ref


def test_image_progress_and_the_announced_pull(registry: Registry, tmp_path: Path) -> None:
    ref = _push(registry, tmp_path, "progress-pull")
    announced: list[str] = []
    lines: list[str] = []
    with Engine(store=tmp_path / "store", announce=announced.append) as engine:
        image = engine.image(ref, progress=lines.append)
        downloads = [line for line in lines if line.endswith("downloading") or ": downloading " in line]
        assert len(downloads) == 3, lines  # one per blob: the config and two layers
        assert sum(": done, " in line for line in lines) == 3
        assert any("/3.0MB" in line for line in lines), lines  # the big layer's quarters
        assert all(line.startswith(f"{ref} ") for line in lines)
        assert len(announced) == 1 and announced[0].startswith(f"pulled {ref}: ") and "MB in " in announced[0]
        # stored now: nothing to download, nothing said
        lines.clear()
        assert engine.image(ref, progress=lines.append).digest == image.digest
        assert lines == [] and len(announced) == 1
        engine.remove(image)


def test_build_progress_reports_steps_and_the_pull_of_from(registry: Registry, tmp_path: Path) -> None:
    ref = _push(registry, tmp_path, "progress-build")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "f.txt").write_text("f\n")
    (context / "Containerfile").write_text(f"FROM {ref}\nCOPY f.txt /f.txt\nENV A=1\n")
    announced: list[str] = []
    lines: list[str] = []
    with Engine(store=tmp_path / "store", announce=announced.append) as engine:
        image = engine.build(context=context, tag="progress:built", progress=lines.append)
        # the base image is pulled while the build is planned, before its first step
        first = lines.index(f"STEP 1/3: FROM {ref}")
        assert all(line.startswith(f"{ref} ") for line in lines[:first]) and first >= 6, lines
        assert "STEP 2/3: COPY f.txt /f.txt" in lines and "STEP 3/3: ENV A=1" in lines
        assert [a.split(":", 1)[0] for a in announced] == ["pulled " + ref.split(":", 1)[0], "built progress"]
        assert announced[1].startswith("built progress:built: 3 steps, 1 ran")
        lines.clear()
        engine.build(context=context, tag="progress:built", progress=lines.append)
        assert "  ---> cached" in lines and not any("downloading" in line for line in lines)
        engine.remove(image)
        engine.remove(ref)


def test_cli_pull_prints_plain_lines_to_a_log(registry: Registry, tmp_path: Path) -> None:
    ref = _push(registry, tmp_path, "progress-cli")
    r = subprocess.run([sys.executable, "-m", "pytest_minicontainer", "--store", str(tmp_path / "store"), "pull", ref],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\x1b" not in r.stderr  # no redrawing in a log file
    assert r.stderr.count(": downloading") == 3 and r.stderr.count(": done, ") == 3  # config + 2 layers
    assert r.stdout.startswith("sha256:")  # the result stays on stdout, alone


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1): apt-get install bsdutils")
def test_cli_pull_draws_a_bar_on_a_terminal(registry: Registry, tmp_path: Path) -> None:
    ref = _push(registry, tmp_path, "progress-tty")
    pull = shlex.join([sys.executable, "-m", "pytest_minicontainer", "--store", str(tmp_path / "store"), "pull", ref])
    r = subprocess.run(["script", "-qec", pull, "/dev/null"], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout
    assert b"[" + b"#" * 30 + b"] 3.0MB/3.0MB\x1b[K" in r.stdout, r.stdout
    # each blob's line is drawn from its start (\r), not a line per update
    assert len(re.findall(rb"\r[0-9a-f]{12}: \[", r.stdout)) >= 3 and b": downloading" not in r.stdout
