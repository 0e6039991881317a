"""Containerfile builds end to end: instructions, the layer cache, stages, failures, the CLI.

Each test that must run its steps starts its file with a unique ``ENV``, so the session's
shared store cannot serve it from another test's cache.  "No step ran" is proven by counting
the containers the engine starts and by RUN steps that write a random uuid (a re-run would
give another layer, hence another image digest).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import lzma
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer import BuildError, Engine
from pytest_minicontainer.cli import main as cli_main
from tests.conftest import count_runs

DATA = Path(__file__).resolve().parents[1] / "data" / "containerfile"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runs(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every container the engine starts during the test (a build step that runs starts one)."""
    return count_runs(engine, monkeypatch)


def unique() -> str:
    return f"ENV TEST_ID={uuid.uuid4().hex}\n"


def read(engine: Engine, image: Any, cmd: str, user: str | None = None) -> str:
    with engine.run(image, command=(), user=user) as c:
        result = c.exec(cmd)
        assert result.returncode == 0, result.stderr
        return result.stdout


def _maps_app_user(engine: Engine) -> bool:
    """Whether the runtime's id mapping can represent the busybox image's ``app`` (uid 1000)."""
    return engine.runtime.idmap.max_uid >= 1000


def test_every_instruction_end_to_end(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    # A single rootless mapping has only root inside: USER app is then refused (see
    # test_runtime's unmappable-user test), so the build switches to uid 0 there.
    user, uid = ("app", "1000") if _maps_app_user(engine) else ("root", "0")
    ctx = tmp_path / "ctx"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "tree" / "sub" / "f.txt").write_text("in tree\n")
    (ctx / "tree" / "skip.log").write_text("ignored\n")
    (ctx / "one.txt").write_text("one\n")
    (ctx / "two.cfg").write_text("two\n")
    (ctx / "three.cfg").write_text("three\n")
    (ctx / ".containerignore").write_text("**/*.log\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"from the archive\n"
        info = tarfile.TarInfo("pkg/inside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (ctx / "archive.tar.gz").write_bytes(buf.getvalue())
    containerfile = f"""\
# syntax and comments are fine
ARG BASE=rootfs:{busybox_rootfs}
FROM ${{BASE}} AS final
{unique()}
ARG WHO=world
ENV GREETING="hello ${{WHO}}" \\
    EMPTY=""
WORKDIR /srv/app
COPY one.txt ./
COPY --chmod=600 *.cfg conf/
COPY tree /tree/
ADD archive.tar.gz /unpacked/
ADD one.txt /added.txt
RUN echo "$GREETING from $(pwd) as $(id -u), WHO=$WHO" > /srv/app/run.txt
SHELL ["/bin/sh", "-ec"]
RUN ["/bin/sh", "-c", "echo exec form > /srv/app/exec.txt"]
USER {user}
RUN id -u > /tmp/uid.txt
LABEL org.example.name="demo image" version=2
EXPOSE 8080 53/udp
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD test -f /srv/app/run.txt
ENTRYPOINT ["/bin/echo"]
CMD ["default", "args"]
"""
    image = engine.build(containerfile, ctx, tag="built/every:1", build_args={"WHO": "tests"})
    cfg = image.config
    assert cfg.workdir == "/srv/app"
    assert cfg.user == user
    assert cfg.env_dict["GREETING"] == "hello tests"
    assert cfg.env_dict["EMPTY"] == ""
    assert "WHO" not in cfg.env_dict  # ARGs are not persisted
    assert cfg.labels_dict == {"org.example.name": "demo image", "version": "2"}
    assert cfg.exposed_ports == ("53/udp", "8080/tcp")
    assert cfg.stop_signal == "SIGINT"
    assert cfg.shell == ("/bin/sh", "-ec")
    assert cfg.healthcheck is not None and cfg.healthcheck.retries == 2 and cfg.healthcheck.interval == 5.0
    assert cfg.default_command() == ["/bin/echo", "default", "args"]
    assert engine.image("built/every:1").digest == image.digest

    out = read(engine, image, "cat run.txt exec.txt /tmp/uid.txt one.txt conf/two.cfg /tree/sub/f.txt "
                              "/unpacked/pkg/inside.txt /added.txt; stat -c '%a %n' conf/two.cfg conf/three.cfg; "
                              "ls /tree; pwd", user="0")
    assert out.splitlines() == [
        "hello tests from /srv/app as 0, WHO=tests", "exec form", uid, "one", "two", "in tree",
        "from the archive", "one", "600 conf/two.cfg", "600 conf/three.cfg", "sub", "/srv/app"]
    with engine.run(image) as c:  # ENTRYPOINT + CMD as the main process, as USER app
        assert c.wait(10) == 0
        assert c.logs() == "default args\n"


def test_rebuild_with_nothing_changed_runs_no_step(engine: Engine, busybox_rootfs: Path, tmp_path: Path,
                                                   runs: list[Any]) -> None:
    (tmp_path / "data.txt").write_text("payload\n")
    steps = "".join(f"RUN cat /proc/sys/kernel/random/uuid > /step{n}\n" for n in range(4))
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n{unique()}COPY data.txt /data.txt\nWORKDIR /work\n"
                     f"{steps}ENV DONE=1\nCMD [\"cat\", \"/step0\"]\nLABEL ten=steps\n")
    first = engine.build(containerfile, tmp_path)
    assert len(runs) == 4
    os.utime(tmp_path / "data.txt", (1, 1))  # the cache is keyed by content, not mtime
    runs.clear()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        second = engine.build(containerfile, tmp_path)
        timings.append(time.perf_counter() - started)
        assert second.digest == first.digest
        assert second.layer_dirs == first.layer_dirs
    assert runs == []
    assert min(timings) <= 0.1, f"a fully cached 10-step rebuild took {min(timings) * 1000:.0f} ms (target 100 ms)"


def test_a_change_reruns_only_the_steps_from_the_first_affected_one(engine: Engine, busybox_rootfs: Path,
                                                                    tmp_path: Path, runs: list[Any]) -> None:
    (tmp_path / "input.txt").write_text("v1\n")
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n{unique()}"
                     "RUN cat /proc/sys/kernel/random/uuid > /before\n"
                     "COPY input.txt /input.txt\n"
                     "RUN cat /proc/sys/kernel/random/uuid > /after\n")
    first = engine.build(containerfile, tmp_path)
    before1, after1 = read(engine, first, "cat /before /after").split()
    (tmp_path / "input.txt").write_text("v2\n")
    runs.clear()
    second = engine.build(containerfile, tmp_path)
    assert len(runs) == 1  # only the RUN after the COPY
    before2, after2 = read(engine, second, "cat /before /after").split()
    assert before2 == before1
    assert after2 != after1
    assert read(engine, second, "cat /input.txt") == "v2\n"


def test_no_cache_runs_every_step(engine: Engine, busybox_rootfs: Path, tmp_path: Path, runs: list[Any]) -> None:
    containerfile = f"FROM rootfs:{busybox_rootfs}\n{unique()}RUN cat /proc/sys/kernel/random/uuid > /id\n"
    first = engine.build(containerfile, tmp_path)
    runs.clear()
    again = engine.build(containerfile, tmp_path, no_cache=True)
    assert len(runs) == 1
    assert again.digest != first.digest
    assert read(engine, again, "cat /id") != read(engine, first, "cat /id")


def test_multi_stage_copy_from_target_and_scratch(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    containerfile = f"""\
FROM rootfs:{busybox_rootfs} AS builder
{unique()}
RUN mkdir -p /out/lib && echo built > /out/lib/artifact && echo extra > /out/extra.txt
FROM scratch AS runtime
COPY --from=builder /bin/busybox /bin/busybox
COPY --from=builder /out/lib /opt/lib
COPY --from=0 /out/*.txt /opt/
ENTRYPOINT ["/bin/busybox"]
FROM builder AS other
RUN echo other > /other
"""
    image = engine.build(containerfile, tmp_path, target="runtime")
    assert len(image.layer_dirs) == 3  # scratch: only the three COPY layers
    with engine.run(image, command=["/bin/busybox", "cat", "/opt/lib/artifact", "/opt/extra.txt"]) as c:
        assert c.wait(10) == 0
        assert c.logs() == "built\nextra\n"
    with engine.run(image, command=["/bin/busybox", "ls", "/"]) as c:
        c.wait(10)
        assert c.logs().split() == ["bin", "dev", "opt", "proc"] or "other" not in c.logs()
    full = engine.build(containerfile, tmp_path)
    assert read(engine, full, "cat /other /out/lib/artifact") == "other\nbuilt\n"


def test_build_args_change_the_result(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    containerfile = f"FROM rootfs:{busybox_rootfs}\n{unique()}ARG FLAVOUR=plain\nRUN echo $FLAVOUR > /flavour\n"
    plain = engine.build(containerfile, tmp_path)
    spicy = engine.build(containerfile, tmp_path, build_args={"FLAVOUR": "spicy"})
    assert read(engine, plain, "cat /flavour") == "plain\n"
    assert read(engine, spicy, "cat /flavour") == "spicy\n"
    assert "FLAVOUR" not in spicy.config.env_dict


def test_failing_run_raises_build_error(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n{unique()}RUN echo fine\n"
                     "RUN echo first line; echo to stderr >&2; exit 3\n")
    with pytest.raises(BuildError) as info:
        engine.build(containerfile, tmp_path)
    err = info.value
    assert err.line == 4
    assert err.status == 3
    assert err.command == "echo first line; echo to stderr >&2; exit 3"
    assert "first line" in err.output and "to stderr" in err.output
    assert str(err).startswith("line 4: RUN echo first line")


def test_bad_copy_fails_before_anything_runs(engine: Engine, busybox_rootfs: Path, tmp_path: Path,
                                             runs: list[Any]) -> None:
    containerfile = f"FROM rootfs:{busybox_rootfs}\n{unique()}RUN echo would run\nCOPY nowhere.txt /\n"
    with pytest.raises(BuildError, match=re.escape("line 4: COPY source 'nowhere.txt' does not exist")) as info:
        engine.build(containerfile, tmp_path)
    assert info.value.line == 4
    assert runs == []
    with pytest.raises(BuildError, match=re.escape("line 3: COPY source '../x' is outside the build context")):
        engine.build(f"FROM rootfs:{busybox_rootfs}\nRUN echo x\nCOPY ../x /\n", tmp_path)
    with pytest.raises(BuildError, match="line 2: unknown instruction 'RUNN'"):
        engine.build(f"FROM rootfs:{busybox_rootfs}\nRUNN echo\n", tmp_path)
    assert runs == []


def test_copy_chown(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    if not _maps_app_user(engine) and os.geteuid() == 0:
        pytest.skip("as root with MINICONTAINER_IDMAP=single the build gives files to uid 1000, which "
                    "containers of that mapping cannot show: run without MINICONTAINER_IDMAP=single")
    if not _maps_app_user(engine):
        # rootless with a single mapping: owning files by uid 1000 is impossible, and says so
        (tmp_path / "f").write_text("x")
        with pytest.raises(BuildError, match=r"subordinate id range(.|\n)*usermod --add-subuids"):
            engine.build(f"FROM rootfs:{busybox_rootfs}\n{unique()}COPY --chown=1000 . /data/\n", tmp_path)
        return
    (tmp_path / "owned.txt").write_text("mine\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").write_text("inner\n")
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        tar.add(tmp_path / "owned.txt", arcname="x/from-tar.txt")
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n{unique()}COPY --chown=app:app owned.txt /home/app/\n"
                     "COPY --chown=1000 dir /data/dir\nCOPY owned.txt /root-owned.txt\n"
                     "ADD --chown=1000:0 a.tar /t/\n")
    image = engine.build(containerfile, tmp_path)
    out = read(engine, image, "stat -c '%u:%g %n' /home/app/owned.txt /data/dir /data/dir/inner /root-owned.txt "
                              "/t/x/from-tar.txt")
    assert out.splitlines() == ["1000:1000 /home/app/owned.txt", "1000:1000 /data/dir",
                                "1000:1000 /data/dir/inner", "0:0 /root-owned.txt", "1000:0 /t/x/from-tar.txt"]


def make_wheel(package: Path, dest: Path) -> Path:
    """A pure-Python wheel of the test package, zipped by hand.

    Building it with pip would need the ``wheel`` package (setuptools < 70 calls bdist_wheel),
    which CI's Python may not have; a wheel is only a zip with a dist-info directory.
    """
    import base64
    import hashlib
    import zipfile

    name, version = "minipkg", "1.0"
    files = {f"{name}/{p.name}": p.read_bytes() for p in sorted((package / name).glob("*.py"))}
    info = f"{name}-{version}.dist-info"
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def test_build_from_host_installs_a_python_package(engine: Engine, tmp_path: Path) -> None:
    # Rootless, the host's /usr and the venv belong to ids the user namespace does not map, so
    # they are read-only inside: the package goes to a new directory on PYTHONPATH, which works
    # as root too.  The wheel is made from the project's test data (tests/data/containerfile/minipkg).
    wheel = make_wheel(DATA / "minipkg", tmp_path)
    containerfile = f"""\
FROM host
COPY {wheel.name} /src/
RUN python -m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \\
        --target /pkgs /src/{wheel.name}
ENV PYTHONPATH=/pkgs
"""
    image = engine.build(containerfile, tmp_path, network="none", tag="built/minipkg:1")
    with engine.run("built/minipkg:1", command=()) as c:
        result = c.exec(["python", "-c", "import minipkg; print(minipkg.greet(), minipkg.__file__)"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from minipkg /pkgs/minipkg/__init__.py\n"
    assert image.config.env_dict["PYTHONPATH"] == "/pkgs"


def _build_script() -> str:
    return textwrap.dedent("""\
        import sys
        from pytest_minicontainer import Engine
        from pytest_minicontainer.build import build
        with Engine(store=sys.argv[1]) as engine:
            image = build(engine, sys.argv[2], sys.argv[3], progress=lambda line: print(line, file=sys.stderr))
        print(image.digest)
        """)


def test_two_processes_building_the_same_file_build_it_once(engine: Engine, busybox_rootfs: Path,
                                                            tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text(
        f"FROM rootfs:{busybox_rootfs}\n{unique()}RUN sleep 1; cat /proc/sys/kernel/random/uuid > /id\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-c", _build_script(), str(engine.store_path), str(tmp_path / "Containerfile"),
           str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]  # a second run of the RUN would have another uuid
    assert sorted(err.count("---> cached") for _out, err in outputs) == [0, 1]


def test_cli_build(engine: Engine, busybox_rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM rootfs:{busybox_rootfs}\n{unique()}ARG V=0\nRUN echo $V > /v\n")
    other = tmp_path / "Other.containerfile"
    other.write_text(f"FROM rootfs:{busybox_rootfs} AS a\n{unique()}\nFROM a AS b\nRUN exit 1\n")
    store = str(engine.store_path)
    assert cli_main(["--store", store, "build", "-t", "cli/built:1", "--build-arg", "V=7", str(ctx)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("sha256:")
    assert "STEP 4/4: RUN echo $V > /v" in captured.err
    assert read(engine, engine.image("cli/built:1"), "cat /v") == "7\n"
    derived = engine.build("FROM cli/built:1\nRUN cat /v > /copy\n", ctx)  # a built image is usable in FROM
    assert read(engine, derived, "cat /copy") == "7\n"
    assert cli_main(["--store", store, "images"]) == 0
    assert "cli/built" in capsys.readouterr().out
    assert cli_main(["--store", store, "build", "-q", "-f", str(other), "--target", "a", "--no-cache",
                     str(ctx)]) == 0
    assert cli_main(["--store", store, "build", "-q", "-f", str(other), str(ctx)]) == 125
    assert "line 5: RUN exit 1 failed with exit status 1" in capsys.readouterr().err


def test_workdir_is_created_and_user_must_exist(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    image = engine.build(f"FROM rootfs:{busybox_rootfs}\n{unique()}WORKDIR /a/b/c\nRUN pwd > /pwd\n", tmp_path)
    assert read(engine, image, "cat /pwd; stat -c %a /a/b/c") == "/a/b/c\n755\n"
    with pytest.raises(BuildError, match="line 4: RUN: cannot start"):
        engine.build(f"FROM rootfs:{busybox_rootfs}\n{unique()}USER nobody-here\nRUN true\n", tmp_path)




def test_continued_lines_join_as_docker_joins_them(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    # Docker removes only the escape character and the newline: nothing is inserted, and the
    # next line keeps its indentation (a space there must be written).
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n{unique()}ENV PATH=/usr/bin:\\\n/bin\n"
                     "RUN echo hello\\\nworld > /o1 && echo \"a\\\n   b\" > /o2 \\\n"
                     "    # a comment\n  && echo c > /o3\n")
    image = engine.build(containerfile, tmp_path)
    assert image.config.env_dict["PATH"] == "/usr/bin:/bin"
    assert read(engine, image, "cat /o1 /o2 /o3") == "helloworld\na   b\nc\n"


def test_tab_after_the_instruction(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    image = engine.build(f"FROM\trootfs:{busybox_rootfs}\n{unique()}RUN\techo tabbed > /t\nENV\tK=v\n", tmp_path)
    assert read(engine, image, "cat /t") == "tabbed\n"
    assert image.config.env_dict["K"] == "v"


def test_arg_without_a_value_is_unset(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n{unique()}ARG X\nENV Y=${{X-dflt}}\n"
                     'RUN test -z "${X+set}" && env > /env\n')
    image = engine.build(containerfile, tmp_path)
    assert image.config.env_dict["Y"] == "dflt"
    assert "X=" not in read(engine, image, "cat /env").splitlines()
    given = engine.build(containerfile.replace("RUN test -z", "RUN test -n"), tmp_path, build_args={"X": ""})
    assert given.config.env_dict["Y"] == ""  # passed, even empty: set


def test_run_heredocs_run_as_buildkit_runs_them(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """``RUN <<EOF`` (the heredoc is the script; a ``#!`` line picks the interpreter) and heredocs
    in a command (the shell reads them: quoted delimiters keep ``$``, ``<<-`` strips tabs)."""
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n# {uuid.uuid4().hex}\n"
                     "RUN <<EOF\necho one > /script\n# a comment of the script\n\necho two >> /script\nEOF\n"
                     "RUN cat <<'END' > /f && cat <<-TAB >> /f\n$HOME stays\nEND\n\ttabbed\n\tTAB\n"
                     "RUN <<SCRIPT\n#!/bin/sh -e\necho \"shebang $0\" > /shebang\nSCRIPT\n")
    image = engine.build(containerfile, tmp_path)
    try:
        with engine.run(image, ()) as c:
            assert c.read_text("/script") == "one\ntwo\n"
            assert c.read_text("/f") == "$HOME stays\ntabbed\n"
            assert c.read_text("/shebang").startswith("shebang /")
    finally:
        engine.remove(image)


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


def test_run_layers_hold_no_resolver_mount_point(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    # network="host" mounts the host's resolv.conf over an empty file the runtime creates when
    # the image has none: that file (and the /etc copied up for it) is not the RUN's change
    assert not (busybox_rootfs / "etc" / "resolv.conf").exists()
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    image = engine.build(f"FROM rootfs:{busybox_rootfs}\n{unique()}RUN echo x > /n\n", tmp_path, network="host")
    assert _files(image.layer_dirs[-1]) == ["n"]
    with engine.run(image, command=(), network="none") as c:
        assert c.exec(["test", "-e", "/etc/resolv.conf"]).returncode == 1
    # an image with its own keeps it, and a RUN on it leaves it alone
    own = engine.build(f"FROM rootfs:{busybox_rootfs}\n{unique()}COPY resolv.conf /etc/\nRUN echo y > /m\n",
                       tmp_path, network="host")
    assert _files(own.layer_dirs[-1]) == ["m"]
    with engine.run(own, command=(), network="none") as c:
        assert c.exec(["cat", "/etc/resolv.conf"]).stdout == "nameserver 192.0.2.1\n"


def test_ignore_exceptions_and_dotted_names(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    for rel, text in (("docs/README.md", "readme\n"), ("docs/other.md", "other\n"), ("sub/keep.txt", "keep\n"),
                      ("sub/drop.tmp", "drop\n"), ("..foo", "dots\n")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / ".dockerignore").write_text("docs\n!docs/README.md\n*.tmp\nsub/*.tmp\n")
    containerfile = f"FROM rootfs:{busybox_rootfs}\n{unique()}COPY . /app/\nCOPY ..foo /dots\n"
    image = engine.build(containerfile, tmp_path)
    assert read(engine, image, "cd /app && find . | sort; cat docs/README.md /dots").splitlines() == [
        ".", "./..foo", "./.dockerignore", "./docs", "./docs/README.md", "./sub", "./sub/keep.txt",
        "readme", "dots"]
    (tmp_path / "docs" / "README.md").write_text("changed\n")  # re-included: part of the cache key
    again = engine.build(containerfile, tmp_path)
    assert read(engine, again, "cat /app/docs/README.md") == "changed\n"


def test_add_unpacks_only_archives_and_keeps_whiteout_names(engine: Engine, busybox_rootfs: Path,
                                                            tmp_path: Path) -> None:
    (tmp_path / "zeros.img").write_bytes(b"\0" * 2048 + b"hello")  # a disk image: no tar header
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b"just text\n"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("etc/.wh.passwd", "etc/.wh..wh..opq", "etc/added"):
            info = tarfile.TarInfo(name)
            info.size = len(name)
            tar.addfile(info, io.BytesIO(name.encode()))
    (tmp_path / "wh.tar").write_bytes(buf.getvalue())
    (tmp_path / "wh.tar.xz").write_bytes(lzma.compress(buf.getvalue()))
    containerfile = (f"FROM rootfs:{busybox_rootfs}\n{unique()}ADD zeros.img /z/\nADD notes.txt.gz /n/\n"
                     "ADD wh.tar /\nADD wh.tar.xz /xz/\n")
    image = engine.build(containerfile, tmp_path)
    out = read(engine, image, "ls /z /n; wc -c < /z/zeros.img; ls -A /etc; cat /etc/passwd /xz/etc/.wh.passwd")
    assert out.splitlines() == [
        "/n:", "notes.txt.gz", "", "/z:", "zeros.img", "2053",
        ".wh..wh..opq", ".wh.passwd", "added", "group", "hosts", "mtab", "passwd",
        "root:x:0:0:root:/root:/bin/sh", "app:x:1000:1000:app:/home/app:/bin/sh", "etc/.wh.passwd"]


def test_copy_chown_leaves_the_images_own_files_alone(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    # Rootless, --chown runs `chown` in a container: on the copied entries and the directories
    # the copy created, never on what the image had around them (/usr/local, base.txt).
    if not _maps_app_user(engine):
        pytest.skip("owning files by uid 1000 needs a subordinate id range (see test_copy_chown)")
    (tmp_path / "dir" / "share").mkdir(parents=True)
    (tmp_path / "dir" / "share" / "new.txt").write_text("new\n")
    (tmp_path / "dir" / "top.txt").write_text("top\n")
    (tmp_path / "tarsrc").mkdir()
    (tmp_path / "tarsrc" / "x").write_text("x\n")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(tmp_path / "tarsrc", arcname="lib")
    containerfile = f"""\
FROM rootfs:{busybox_rootfs} AS src
{unique()}
RUN mkdir -p /out/d && echo o > /out/d/o
FROM rootfs:{busybox_rootfs}
{unique()}
RUN mkdir -p /usr/local/share && echo base > /usr/local/share/base.txt
COPY --chown=app:app dir/ /usr/local/
ADD --chown=1000:1000 t.tar /usr/local/
COPY --from=src --chown=1000:1000 /out /usr/local/
COPY --chown=1000 dir/top.txt /opt/new/
"""
    image = engine.build(containerfile, tmp_path)
    paths = ("/usr /usr/local /usr/local/share /usr/local/share/base.txt /usr/local/share/new.txt /usr/local/top.txt "
             "/usr/local/lib /usr/local/lib/x /usr/local/d /usr/local/d/o /opt /opt/new /opt/new/top.txt")
    assert read(engine, image, f"stat -c '%u:%g %n' {paths}").splitlines() == [
        "0:0 /usr", "0:0 /usr/local", "1000:1000 /usr/local/share", "0:0 /usr/local/share/base.txt",
        "1000:1000 /usr/local/share/new.txt", "1000:1000 /usr/local/top.txt", "1000:1000 /usr/local/lib",
        "1000:1000 /usr/local/lib/x", "1000:1000 /usr/local/d", "1000:1000 /usr/local/d/o", "1000:1000 /opt",
        "1000:1000 /opt/new", "1000:1000 /opt/new/top.txt"]


def test_volume_is_recorded_made_and_its_data_kept(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """VOLUME (every official database image has one, issue 16): the paths go into the config
    ("Volumes", as Docker writes it), the directories are made, and what is written there stays
    in the layer and the container's writable layer, so a seeded database can be committed."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(textwrap.dedent(f"""
        FROM rootfs:{busybox_rootfs}
        ENV PGDATA=/var/lib/pg/data
        VOLUME ["/var/lib/pg", "$PGDATA"]
        WORKDIR /srv
        VOLUME cache /srv/logs
        RUN echo built > $PGDATA/from-build
    """).lstrip())
    image = engine.build(context=ctx)
    try:
        assert image.config.volumes == ("/srv/cache", "/srv/logs", "/var/lib/pg", "/var/lib/pg/data")
        assert image.config.to_oci()["Volumes"] == {p: {} for p in image.config.volumes}
        with engine.run(image, ()) as c:
            assert c.exec("test -d /srv/cache && test -d /srv/logs && cat /var/lib/pg/data/from-build").stdout \
                == "built\n"
            c.exec("echo seeded > /var/lib/pg/data/seed", check=True)
            snapshot = c.commit()
        assert snapshot.config.volumes == image.config.volumes
        with engine.run(snapshot, ()) as clone:
            assert clone.read_text("/var/lib/pg/data/seed") == "seeded\n"  # Docker's commit would lose it
        engine.remove(snapshot)
    finally:
        engine.remove(image)


def test_a_run_layer_with_files_private_to_another_user(engine: Engine, busybox_rootfs: Path,
                                                        tmp_path: Path) -> None:
    """What a Debian package's postinst does (postgresql's pg_ident.conf, mode 0640 of postgres):
    rootless, the layer was hashed by the user, who cannot read such a file, and the build died
    with a PermissionError, leaving a build-layer-* directory behind (issue 16)."""
    if not _maps_app_user(engine):
        pytest.skip("needs a subordinate id range for uid 1000 (MINICONTAINER_IDMAP=single maps root only; "
                    "give the user a range in /etc/subuid)")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        f"FROM rootfs:{busybox_rootfs}\n"
        "RUN touch /s && chown 1000 /s && chmod 600 /s && mkdir /p && echo x > /p/f && chown -R 1000 /p "
        "&& chmod 700 /p\n")
    image = engine.build(context=ctx)
    try:
        with engine.run(image, ()) as c:
            assert c.exec("stat -c '%u %a' /s /p /p/f").stdout.split("\n")[:3] == ["1000 600", "1000 700", "1000 644"]
        assert not [p for p in (engine.store.root / "tmp").iterdir() if p.name.startswith("build-")]
    finally:
        engine.remove(image)


def test_run_output_streams_live_in_order(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """A RUN's lines reach ``progress`` as they are written, stdout and stderr in their order,
    not after the step (issue 16); the CLI prints them with --progress=plain."""
    seen: list[tuple[float, str]] = []
    text = (f"FROM rootfs:{busybox_rootfs}\n# {uuid.uuid4().hex}\n"
            "RUN echo first; echo to-stderr >&2; sleep 1; echo last\n")
    image = engine.build(text, tmp_path, progress=lambda line: seen.append((time.monotonic(), line)))
    try:
        lines = [line for _, line in seen]
        assert lines[lines.index("first"):lines.index("last") + 1] == ["first", "to-stderr", "last"]
        first = next(t for t, line in seen if line == "first")
        done = next(t for t, line in seen if line.startswith("  ---> "))
        assert done - first >= 0.5  # it came while the step still ran (the step sleeps 1 s after it)
    finally:
        engine.remove(image)
    ctx = tmp_path / "cli"
    ctx.mkdir()
    for progress in ("plain", "quiet"):
        (ctx / "Containerfile").write_text(f"FROM rootfs:{busybox_rootfs}\n# {uuid.uuid4().hex}\n"
                                           "RUN echo said-by-run; echo said-to-stderr >&2\n")
        r = subprocess.run([sys.executable, "-m", "pytest_minicontainer", "--store", str(tmp_path / "store"),
                            "build", f"--progress={progress}", str(ctx)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("sha256:")
        shown = [line for line in r.stderr.splitlines() if line.startswith("said-")]
        assert shown == (["said-by-run", "said-to-stderr"] if progress == "plain" else [])


def test_onbuild_triggers_run_in_the_childs_build(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """A base image that says what its children do (``ONBUILD COPY . /app``, ``ONBUILD RUN``): the
    child's build copies from *its* context and runs the step (issue 16)."""
    base_ctx, child_ctx = tmp_path / "base", tmp_path / "child"
    base_ctx.mkdir()
    child_ctx.mkdir()
    tag = f"onbuild-base-{uuid.uuid4().hex[:8]}:1"
    (base_ctx / "Containerfile").write_text(f"FROM rootfs:{busybox_rootfs}\n"
                                            "ONBUILD COPY app.txt /app/\n"
                                            "ONBUILD RUN wc -c < /app/app.txt > /app/size\n")
    (child_ctx / "app.txt").write_text("the child's own file\n")
    (child_ctx / "Containerfile").write_text(f"FROM {tag}\nRUN echo child > /app/child\n")
    base = engine.build(context=base_ctx, tag=tag)
    child = engine.build(context=child_ctx)
    try:
        assert len(base.config.onbuild) == 2 and child.config.onbuild == ()
        with engine.run(child, ()) as c:
            assert c.read_text("/app/app.txt") == "the child's own file\n"
            assert c.read_text("/app/size").strip() == "21" and c.read_text("/app/child") == "child\n"
    finally:
        engine.remove(child)
        engine.remove(base)


def test_run_mounts_cache_bind_tmpfs_and_secret(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """``RUN --mount`` as BuildKit defines it (issue 16): a cache kept across builds, a read-only
    bind of the context (rw: a throw-away copy), an empty tmpfs, and a secret that lands in no
    layer and in no cache key; no mount point is left in the image."""
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "input.txt").write_text("from the context\n")
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value\n")
    marker = uuid.uuid4().hex
    (ctx / "Containerfile").write_text(textwrap.dedent(f"""
        FROM rootfs:{busybox_rootfs}
        # {marker}
        RUN --mount=type=cache,target=/root/.cache/tool \\
            --mount=type=bind,source=src,target=/mnt/src \\
            --mount=type=tmpfs,target=/scratch \\
            --mount=type=secret,id=token \\
            echo run >> /root/.cache/tool/runs && wc -l < /root/.cache/tool/runs > /cache-runs \\
            && cat /mnt/src/input.txt > /from-bind && ! touch /mnt/src/new 2>/dev/null \\
            && echo t > /scratch/t && test "$(cat /run/secrets/token)" = s3cr3t-value && echo ok > /secret-seen
        RUN --mount=type=bind,source=src,target=/mnt/src,rw echo changed > /mnt/src/input.txt
    """).lstrip())
    first = engine.build(context=ctx, secrets={"token": secret})
    try:
        with engine.run(first, ()) as c:
            assert c.read_text("/cache-runs").strip() == "1"
            assert c.read_text("/from-bind") == "from the context\n"
            assert c.read_text("/secret-seen") == "ok\n"
            for stub in ("/run/secrets", "/scratch", "/mnt/src", "/root/.cache"):
                assert not c.exists(stub), stub  # no mount point in the image
        assert (ctx / "src" / "input.txt").read_text() == "from the context\n"  # rw wrote to a copy
        for layer in first.layer_dirs:  # the secret is in no layer
            for d, _dirs, files in os.walk(layer):
                for name in files:
                    with contextlib.suppress(OSError):
                        assert b"s3cr3t-value" not in (Path(d) / name).read_bytes()
        # another secret value: the same cache key (the step is cached); a new step uses the cache
        secret.write_text("other\n")
        again = engine.build(context=ctx, secrets={"token": secret})
        assert again.digest == first.digest
        (ctx / "Containerfile").write_text((ctx / "Containerfile").read_text().replace(marker, marker + "2")
                                           .replace("test \"$(cat /run/secrets/token)\" = s3cr3t-value", "true"))
        third = engine.build(context=ctx, secrets={"token": secret})
        with engine.run(third, ()) as c:
            assert c.read_text("/cache-runs").strip() == "2"  # the cache directory kept the first run's line
        engine.remove(third)
        assert any(engine.store.cache_mounts.iterdir())  # kept in the store, until prune --all
    finally:
        engine.remove(first)
    with pytest.raises(BuildError, match="secret 'token' is required and was not given"):
        engine.build(f"FROM rootfs:{busybox_rootfs}\nRUN --mount=type=secret,id=token,required true\n", ctx)
    with pytest.raises(BuildError, match="is outside the build context"):
        engine.build(f"FROM rootfs:{busybox_rootfs}\nRUN --mount=type=bind,source=../..,target=/x true\n", ctx)
    with pytest.raises(BuildError, match=r"from=nowhere.*nowhere"):
        engine.build(f"FROM rootfs:{busybox_rootfs}\nRUN --mount=type=bind,from=nowhere,target=/x true\n", ctx)


def test_cli_build_takes_secrets(busybox_rootfs: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "token").write_text("from-the-cli\n")
    (ctx / "Containerfile").write_text(f"FROM rootfs:{busybox_rootfs}\n"
                                       "RUN --mount=type=secret,id=tok,required cat /run/secrets/tok\n")
    mc = [sys.executable, "-m", "pytest_minicontainer", "--store", str(tmp_path / "store"), "build"]
    r = subprocess.run([*mc, "--secret", f"id=tok,src={tmp_path / 'token'}", str(ctx)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "from-the-cli" in r.stderr  # the step's output, streamed
    bad = subprocess.run([*mc, "--secret", "tok", str(ctx)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "give id=NAME,src=FILE" in bad.stderr


def test_copy_and_add_heredocs_are_inline_files(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """``COPY <<EOF /path`` (issue 16): the heredoc is a file, named by its delimiter inside a
    directory; unquoted delimiters expand variables (quotes stay), ``<<-`` strips tabs."""
    containerfile = (
        f"FROM rootfs:{busybox_rootfs}\n"
        "ARG NAME=world\n"
        "COPY <<EOF /etc/greeting\n"
        'hello $NAME "quoted" \\$kept\n'
        "EOF\n"
        "COPY --chmod=755 <<'run.sh' <<-\"notes.txt\" /opt/\n"
        "#!/bin/sh\n"
        "echo ran $NAME\n"
        "run.sh\n"
        "\tnotes $NAME\n"
        "\tnotes.txt\n"
        "ADD <<data.tar.gz /srv/\n"
        "not an archive\n"
        "data.tar.gz\n"
        "RUN /opt/run.sh > /ran\n"
    )
    image = engine.build(containerfile, tmp_path, network="none")
    assert read(engine, image, "cat /etc/greeting") == 'hello world "quoted" $kept\n'
    assert read(engine, image, "stat -c '%a %s' /etc/greeting /opt/run.sh /opt/notes.txt") == \
        "644 27\n755 25\n755 12\n"
    assert read(engine, image, "cat /opt/notes.txt /ran /srv/data.tar.gz") == \
        "notes $NAME\nran world\nnot an archive\n"  # the ARG is in the RUN's environment
    again = engine.build(containerfile.replace("not an archive", "changed"), tmp_path, network="none")
    assert again.digest != image.digest and read(engine, again, "cat /srv/data.tar.gz") == "changed\n"
    with pytest.raises(BuildError, match="a heredoc cannot be the destination"):
        engine.build(f"FROM rootfs:{busybox_rootfs}\nCOPY x <<EOF\nhi\nEOF\n", tmp_path)


def test_run_mount_bind_from_a_stage_or_an_image(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """``RUN --mount=type=bind,from=...`` (issue 16): an earlier stage's or an image's files,
    merged from its layers; ``rw`` writes are thrown away; the key follows the stage."""
    def containerfile(marker: str) -> str:
        return (f"FROM rootfs:{busybox_rootfs} AS builder\n"
                f"RUN mkdir -p /out/sub && echo {marker} > /out/sub/made && echo base > /out/base\n"
                "RUN echo later > /out/later && rm /out/base\n"
                f"FROM rootfs:{busybox_rootfs}\n"
                "RUN --mount=type=bind,from=builder,source=/out,target=/in cat /in/sub/made /in/later > /got"
                " && test ! -e /in/base && ! touch /in/x 2>/dev/null\n"
                "RUN --mount=type=bind,from=builder,source=/out/later,target=/one,rw echo more >> /one && cat /one"
                " > /file\n"
                f"RUN --mount=type=bind,from=rootfs:{busybox_rootfs},source=/data,target=/img ls /img > /listed\n")

    image = engine.build(containerfile("first"), tmp_path, network="none")
    assert read(engine, image, "cat /got /file") == "first\nlater\nlater\nmore\n"
    assert read(engine, image, "cat /listed") == "gone.txt\nkeep.txt\n"
    assert read(engine, image, "ls -d /in /one /img 2>/dev/null; true") == ""  # no mount point is left
    changed = engine.build(containerfile("second"), tmp_path, network="none")
    assert read(engine, changed, "cat /got") == "second\nlater\n"  # the builder changed: the step ran again
    with pytest.raises(BuildError, match="source=/missing does not exist in builder"):
        engine.build(containerfile("x").replace("source=/out,", "source=/missing,"), tmp_path, network="none")


def test_run_mount_ssh_gives_the_agent_socket(engine: Engine, tmp_path: Path) -> None:
    """``RUN --mount=type=ssh`` (issue 16): the agent's socket at /run/buildkit/ssh_agent.0,
    ``SSH_AUTH_SOCK`` pointing at it; absent and not required, the step runs without it."""
    import socket as socketlib

    path = tmp_path / "agent.sock"
    server = socketlib.socket(socketlib.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"agent says hi")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    script = ("import os, socket; s = socket.socket(socket.AF_UNIX); s.connect(os.environ['SSH_AUTH_SOCK']);"
              " open('/answer', 'wb').write(os.environ['SSH_AUTH_SOCK'].encode() + b' ' + s.recv(100))")
    try:
        image = engine.build(f"FROM host\nRUN --mount=type=ssh python3 -c \"{script}\"\n", tmp_path,
                             network="none", ssh={"default": path})
        assert read(engine, image, "cat /answer") == "/run/buildkit/ssh_agent.0 agent says hi"
    finally:
        thread.join(5)
        server.close()
    without = engine.build("FROM host\nRUN --mount=type=ssh,id=other test -z \"$SSH_AUTH_SOCK\" || true\n",
                           tmp_path, network="none")
    assert without.digest
    with pytest.raises(BuildError, match="ssh 'other' is required and was not given"):
        engine.build("FROM host\nRUN --mount=type=ssh,id=other,required true\n", tmp_path, network="none")
