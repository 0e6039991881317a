"""Sharded CI in small: two pytest runs on two stores share one registry build cache.

The first run (``-n 2``) builds with ``--minicontainer-cache-to``; the second, on a store of its
own, names the cache in its ini file (``minicontainer_cache_from``) and must take every step
from it: its RUN step's random stamp is the first run's, and no step ran.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_minicontainer import Engine
from tests.registry_tools import Registry

RunPytest = Callable[..., pytest.RunResult]

TEST_FILE = """
import os

import pytest

CONTAINERFILE = '''
FROM {base}
RUN head -c 16 /dev/urandom | od -An -tx1 > /stamp
COPY data.txt /data.txt
'''


@pytest.fixture(scope="session")
def app_image(minicontainer, tmp_path_factory):
    ctx = tmp_path_factory.mktemp("ctx")
    (ctx / "data.txt").write_text("data")
    lines = []
    image = minicontainer.build(CONTAINERFILE, ctx, network="none", progress=lines.append)
    return image, lines


@pytest.mark.parametrize("n", [1, 2])
def test_stamp(app_image, minicontainer, n):
    image, lines = app_image
    with minicontainer.run(image, command=()) as c:
        stamp = c.exec("cat /stamp").stdout
    with open(os.environ["STAMPS"], "a") as f:
        f.write(stamp.strip() + " " + str(sum("(from the registry cache)" in l for l in lines)) + "\\n")
"""


def test_two_runs_on_two_stores_share_a_registry_build_cache(crun: RunPytest, pytester: pytest.Pytester,
                                                             engine: Engine, busybox_rootfs: Path,
                                                             registry: Registry, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    base = f"{registry.address}/base/busybox:{uuid.uuid4().hex[:8]}"
    engine.push(engine.image(f"rootfs:{busybox_rootfs}"), base)
    cache = f"{registry.address}/ci/cache:{uuid.uuid4().hex[:8]}"
    pytester.makepyfile(test_app=TEST_FILE.format(base=base))
    stores = [tmp_path / "machine-a", tmp_path / "machine-b"]
    try:
        monkeypatch.setenv("STAMPS", str(tmp_path / "a.txt"))
        first = crun(f"--minicontainer-store={stores[0]}", f"--minicontainer-cache-to={cache}", "-n", "2",
                     store=False)
        first.assert_outcomes(passed=2)
        a = (tmp_path / "a.txt").read_text().split("\n")[:2]
        assert len({line.split()[0] for line in a}) == 1 and all(line.endswith(" 0") for line in a)

        pytester.makeini(f"[pytest]\nminicontainer_cache_from = {cache}\n")
        monkeypatch.setenv("STAMPS", str(tmp_path / "b.txt"))
        second = crun(f"--minicontainer-store={stores[1]}", store=False)
        second.assert_outcomes(passed=2)
        b = (tmp_path / "b.txt").read_text().split("\n")[:2]
        assert {line.split()[0] for line in b} == {a[0].split()[0]}  # the first machine's RUN result
        assert all(line.endswith(" 2") for line in b)  # RUN and COPY: both from the cache
    finally:
        for store in stores:
            if store.exists():
                with Engine(store=store) as e:
                    e.prune(all=True)
