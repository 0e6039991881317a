"""Build an image from a Containerfile, once per session, and test containers of it.

``minicontainer.build(...)`` runs each step in a container of this engine (no daemon); steps
are cached in the store, so the next run reuses them.  ``FROM`` takes any image reference:
here ``busybox``, which the hook in conftest.py resolves to the rootfs it builds.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer import Container, Engine, Image

CONTAINERFILE = """\
    FROM busybox
    COPY greeting.txt /app/greeting.txt
    RUN echo "built by RUN" > /app/stamp
    ENV APP_MODE=test
    WORKDIR /app
    CMD ["cat", "/app/greeting.txt"]
"""


@pytest.fixture(scope="session")
def app_image(minicontainer: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    context: Path = tmp_path_factory.mktemp("app")
    (context / "greeting.txt").write_text("hello from the build context\n")
    (context / "Containerfile").write_text(textwrap.dedent(CONTAINERFILE))
    image = minicontainer.build(context=context, tag="example-app:latest")
    yield image
    minicontainer.remove("example-app:latest")  # the tag goes; the steps stay cached for the next run


@pytest.fixture
def container_image(app_image: Image) -> Image:
    return app_image


def test_the_image_command_runs(container: Container) -> None:
    assert container.wait(timeout=10) == 0
    assert container.logs() == "hello from the build context\n"


def test_build_steps_are_in_the_image(container: Container) -> None:
    result = container.exec("pwd; echo $APP_MODE; cat stamp", check=True)
    assert result.stdout == "/app\ntest\nbuilt by RUN\n"
