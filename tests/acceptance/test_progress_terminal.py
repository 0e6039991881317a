"""A session that pulls or builds says so in pytest's terminal: one line per image, none with -q
(issue 20, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import RunPytest
from tests.registry_tools import Registry, gz_layer, push, write_layout


def _suite(pytester: pytest.Pytester, registry: Registry, busybox_rootfs: Path, tmp_path: Path) -> str:
    layout = tmp_path / "layout"
    write_layout(layout, [gz_layer({"hello.txt": b"hello\n"})], ref="t")
    ref = f"{registry.address}/test/announced:v1"
    push(layout, "t", ref)
    (pytester.path / "Containerfile").write_text(f"FROM rootfs:{busybox_rootfs}\nRUN echo built > /built.txt\n")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.fixture(scope="session")
        def app(minicontainer):
            image = minicontainer.build("Containerfile", ".", tag="announced-app:1", network="none")
            yield image
            minicontainer.remove(image)

        def test_pulls(minicontainer):
            assert minicontainer.image("{ref}").digest.startswith("sha256:")

        def test_builds(minicontainer, app):
            with minicontainer.run(app) as c:
                assert c.read_text("/built.txt") == "built\\n"
        """
    )
    return ref


def test_pulls_and_builds_are_announced_once(crun: RunPytest, pytester: pytest.Pytester, registry: Registry,
                                             busybox_rootfs: Path, tmp_path: Path) -> None:
    ref = _suite(pytester, registry, busybox_rootfs, tmp_path)
    store = f"--minicontainer-store={tmp_path / 'store'}"
    result = crun(store, store=False)
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count("minicontainer: pulled ") == 1 and f"minicontainer: pulled {ref}: 2 blob(s)" in out
    assert out.count("minicontainer: built announced-app:1: 2 steps, 1 ran") == 1
    # quiet: nothing; and a later run pulls nothing (it is stored); it builds again the step
    # whose image the suite removed at its end (as `docker rmi` drops an image's cache)
    quiet = crun(store, "-q", store=False)
    quiet.assert_outcomes(passed=2)
    assert "minicontainer:" not in quiet.stdout.str()
    again = crun(store, store=False)
    assert "minicontainer: pulled" not in again.stdout.str()
    assert again.stdout.str().count("minicontainer: built announced-app:1: 2 steps, 1 ran") == 1


def test_xdist_workers_stay_quiet(crun: RunPytest, pytester: pytest.Pytester, registry: Registry,
                                  busybox_rootfs: Path, tmp_path: Path) -> None:
    _suite(pytester, registry, busybox_rootfs, tmp_path)
    result = crun(f"--minicontainer-store={tmp_path / 'store'}", "-n", "2", store=False)
    result.assert_outcomes(passed=2)
    assert "minicontainer: pulled" not in result.stdout.str()
