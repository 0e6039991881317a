"""The snapshot pattern: prepare a container once, ``commit()`` it, give each test a clone.

Preparing is often the slow part (installing, seeding data).  Commit turns the prepared
container into an image; ``container_factory(snapshot)`` then starts a fresh copy per test, so
tests cannot see each other's writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pytest_minicontainer import Container, Engine, Image


@pytest.fixture(scope="session")
def snapshot(minicontainer: Engine) -> Iterator[Image]:
    with minicontainer.run("busybox", command=()) as prepared:
        prepared.exec("mkdir -p /srv/mc-example-app && echo 'v1' > /srv/mc-example-app/VERSION", check=True)
        image = prepared.commit(tag="example-snapshot:latest")
    yield image
    minicontainer.remove(image)  # an example leaves nothing in your store (prune frees the layer)


def test_starts_from_the_prepared_state(container_factory: Callable[..., Container], snapshot: Image) -> None:
    c = container_factory(snapshot)
    assert c.read_text("/srv/mc-example-app/VERSION") == "v1\n"
    c.write_text("/srv/mc-example-app/VERSION", "v2\n")


def test_each_test_gets_its_own_clone(container_factory: Callable[..., Container], snapshot: Image) -> None:
    c = container_factory(snapshot)
    assert c.read_text("/srv/mc-example-app/VERSION") == "v1\n"
