"""Property test: for random archives our unpacker and GNU tar produce the same tree."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_minicontainer.images import unpack_layer
from tests.imagetools import snapshot

NAMES = st.sampled_from(["a", "b", "c", "d\u00e9", "long-" + "n" * 120])
PATHS = st.lists(NAMES, min_size=1, max_size=4).map("/".join)
MODES = st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777, 0o444])
ENTRY = st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]), PATHS, MODES,
                  st.binary(max_size=600), PATHS)


def build(entries: list[tuple[str, str, int, bytes, str]]) -> bytes | None:
    """A tar of ``entries``; None when they do not form a tree both tools accept."""
    kinds: dict[str, str] = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, path, mode, data, target in entries:
            parts = path.split("/")
            parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
            if any(kinds.get(p, "dir") != "dir" for p in parents) or path in kinds:
                continue  # type changes and re-adds: GNU tar and Docker differ on purpose
            if kind == "hardlink" and kinds.get(target) != "file":
                continue
            for p in parents:
                if p not in kinds:
                    info = tarfile.TarInfo(p)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    kinds[p] = "dir"
            info = tarfile.TarInfo(path)
            info.mode = mode if kind != "dir" else (mode | 0o700)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/" + target
                tar.addfile(info)
            else:
                info.type, info.linkname = tarfile.LNKTYPE, target
                tar.addfile(info)
            kinds[path] = "file" if kind == "hardlink" else kind
    return buf.getvalue() if kinds else None


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is missing: apt-get install tar")
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ENTRY, min_size=1, max_size=12))
def test_same_tree_as_gnu_tar(entries: list[tuple[str, str, int, bytes, str]]) -> None:
    blob = build(entries)
    if blob is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours, gnu = Path(tmp, "ours"), Path(tmp, "gnu")
        ours.mkdir()
        gnu.mkdir()
        unpack_layer(io.BytesIO(blob), ours, source="fuzz.tar")
        gnu_tar: list[str | Path] = ["tar", "-C", gnu, "-x", "--same-permissions", "--no-same-owner",
                   "--delay-directory-restore"]
        subprocess.run(gnu_tar, input=blob, check=True)
        assert snapshot(ours) == snapshot(gnu)
        for d in (ours, gnu):
            subprocess.run(["chmod", "-R", "u+rwx", d], check=True)
