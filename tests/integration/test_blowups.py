"""Resource blow-ups (issue 14, finding 8): holes kept, copies streamed, indexes and layers bounded.

``commit()`` made a 4 KiB sparse file a 2.1 GiB layer; ``copy_out`` held the whole tar in
memory; a 1.8 MiB docker-archive grew memory to 179 MiB through its member index; a gzip
bomb unpacked without limit.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from pytest_minicontainer import Engine, ImageError

GIB = 1 << 30


def test_commit_keeps_holes(engine: Engine, busybox_rootfs: Path) -> None:
    with engine.run(f"rootfs:{busybox_rootfs}", command=()) as c:
        c.exec("truncate -s 1G /sparse && printf head | dd of=/sparse conv=notrunc 2>/dev/null", check=True)
        image = c.commit()
    layer_file = Path(image.layer_dirs[-1]) / "sparse"
    st = layer_file.stat()
    assert st.st_size == GIB
    assert st.st_blocks * 512 < (1 << 20), f"{st.st_blocks * 512} bytes on disk: the holes were filled"
    with engine.run(image, command=()) as clone:
        assert clone.exec("head -c 4 /sparse; wc -c < /sparse").stdout == f"head{GIB}\n"


COPY_OUT = textwrap.dedent("""
    import resource, sys
    from pytest_minicontainer import Engine
    store, rootfs, target = sys.argv[1:]
    with Engine(store=store) as engine, engine.run(f"rootfs:{rootfs}", command=()) as c:
        c.exec("dd if=/dev/urandom of=/big bs=1M count=256 2>/dev/null", check=True)
        size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        # 128 MiB more address space than now: half of what the file needs in memory
        resource.setrlimit(resource.RLIMIT_AS, (size + (128 << 20), resource.RLIM_INFINITY))
        c.copy_out("/big", target)
    print("copied")
""")


def test_copy_out_streams_instead_of_holding_the_tar_in_memory(tmp_path: Path, busybox_rootfs: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-c", COPY_OUT, str(tmp_path / "store"), str(busybox_rootfs), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "copied\n", done.stderr[-2000:]
    assert (out / "big").stat().st_size == 256 << 20


def test_an_archive_of_too_many_members_is_refused(engine: Engine, tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(20001):
            tar.addfile(tarfile.TarInfo(f"m{i}"), io.BytesIO(b""))
    with pytest.raises(ImageError, match="more than 20000 members"):
        engine.image(f"docker-archive:{archive}")


def _bomb(path: Path, size: int) -> None:
    """A rootfs tarball whose one file is ``size`` zero bytes: a few kB compressed."""
    with gzip.open(path, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))


def test_a_layer_past_the_size_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _bomb(tmp_path / "bomb.tar.gz", 64 << 20)
    assert (tmp_path / "bomb.tar.gz").stat().st_size < 200_000
    monkeypatch.setenv("MINICONTAINER_MAX_LAYER_SIZE", "16M")
    with Engine(store=tmp_path / "store") as engine, \
            pytest.raises(ImageError, match=r"unpacks to more than 16 MiB[\s\S]*MINICONTAINER_MAX_LAYER_SIZE"):
        engine.image(f"rootfs:{tmp_path / 'bomb.tar.gz'}")
    assert not any((tmp_path / "store" / "layers").iterdir())  # nothing half-unpacked kept
    assert not any((tmp_path / "store" / "tmp").iterdir())
    monkeypatch.setenv("MINICONTAINER_MAX_LAYER_SIZE", "128M")
    with Engine(store=tmp_path / "store") as engine:
        assert engine.image(f"rootfs:{tmp_path / 'bomb.tar.gz'}").digest.startswith("sha256:")


def test_a_bad_size_cap_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _bomb(tmp_path / "small.tar.gz", 10)
    monkeypatch.setenv("MINICONTAINER_MAX_LAYER_SIZE", "lots")
    with Engine(store=tmp_path / "store") as engine, pytest.raises(ImageError, match="is not a size"):
        engine.image(f"rootfs:{tmp_path / 'small.tar.gz'}")


def test_the_ini_key_sets_the_cap(pytester: pytest.Pytester, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINICONTAINER_MAX_LAYER_SIZE", raising=False)
    _bomb(tmp_path / "bomb.tar.gz", 8 << 20)
    pytester.makeini("[pytest]\nminicontainer_max_layer_size = 4M\n")
    pytester.makepyfile(f"""
        def test_image(minicontainer):
            minicontainer.image("rootfs:{tmp_path / 'bomb.tar.gz'}")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--minicontainer-store={tmp_path / 'store'}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unpacks to more than 4 MiB*"])
    assert os.environ.get("MINICONTAINER_MAX_LAYER_SIZE") is None
