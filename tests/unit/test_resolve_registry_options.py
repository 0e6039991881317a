"""images.resolve hands the registry settings it is given to the pull, instead of the environment's."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_minicontainer.image import Image
from pytest_minicontainer.images import registry, resolve
from pytest_minicontainer.images.registry import RegistryOptions
from pytest_minicontainer.store import Store


def test_registry_options_reach_the_pull(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def pull_image(store: Store, text: str, **kwargs: Any) -> Image:
        seen.append(kwargs.get("options"))
        return Image(digest="sha256:" + "0" * 64)

    monkeypatch.setattr(registry, "pull_image", pull_image)
    options = RegistryOptions(mirror="mirror.example:5000", timeout=3.0)
    resolve(store, "example.org/app:1", pull="always", registry_options=options)
    resolve(store, "example.org/app:1", pull="always")
    assert seen == [options, None]  # None: pull_image reads the environment, as before
