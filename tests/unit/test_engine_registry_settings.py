"""``Engine(registry=, max_layer_size=)`` reach every pull, import, build and push of the engine.

The plugin hands its ini keys to the Engine this way instead of writing ``os.environ``, so
these tests set no environment variable: what the engine was given must be what applies.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_minicontainer import Engine, ImageError, RegistryOptions
from pytest_minicontainer.image import Image
from pytest_minicontainer.images import registry
from tests.imagetools import TarBuilder, write_docker_archive

ENV = ("MINICONTAINER_MAX_LAYER_SIZE", "MINICONTAINER_REGISTRY_MIRROR", "MINICONTAINER_INSECURE_REGISTRIES",
       "MINICONTAINER_REGISTRY_TIMEOUT")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def _archive(tmp_path: Path, size: int) -> Path:
    """A docker-archive whose one layer holds a file of ``size`` bytes."""
    layer = TarBuilder().file("big", b"x" * size).bytes()
    path = tmp_path / "image.tar"
    write_docker_archive(path, [layer], ["big:1"])
    return path


def test_the_engine_cap_refuses_a_bigger_layer_without_the_environment(tmp_path: Path) -> None:
    archive = _archive(tmp_path, 2 << 20)
    with Engine(tmp_path / "store", max_layer_size=1 << 20) as engine, \
            pytest.raises(ImageError, match="unpacks to more than 1 MiB"):
        engine.image(f"docker-archive:{archive}")
    assert not any((tmp_path / "store" / "layers").iterdir())
    with Engine(tmp_path / "store") as engine:  # no cap given, none in the environment: 32 GiB
        assert engine.image(f"docker-archive:{archive}").digest.startswith("sha256:")


def test_the_engine_cap_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin already let the environment win over its ini key; what it passes is final."""
    monkeypatch.setenv("MINICONTAINER_MAX_LAYER_SIZE", "1M")
    archive = _archive(tmp_path, 2 << 20)
    with Engine(tmp_path / "store", max_layer_size=4 << 20) as engine:
        assert engine.image(f"docker-archive:{archive}").digest.startswith("sha256:")


def test_the_cap_applies_to_rootfs_tarballs(tmp_path: Path) -> None:
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(TarBuilder().file("big", b"x" * (2 << 20)).bytes())
    with Engine(tmp_path / "store", max_layer_size=1 << 20) as engine, \
            pytest.raises(ImageError, match="unpacks to more than 1 MiB"):
        engine.image(f"rootfs:{tarball}")


def test_registry_options_are_exported_with_the_engine() -> None:
    from pytest_minicontainer.images.registry import RegistryOptions as Inner

    assert RegistryOptions is Inner


def test_a_cap_that_is_no_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_layer_size"):
        Engine(tmp_path / "store", max_layer_size=0)


def test_registry_options_and_cap_reach_the_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def pull_image(store: Any, text: str, **kwargs: Any) -> Image:
        seen.append(kwargs)
        return Image(digest="sha256:" + "0" * 64)

    monkeypatch.setattr(registry, "pull_image", pull_image)
    options = RegistryOptions(mirror="mirror.example:5000", insecure=("reg.lan:5000",), timeout=3.0)
    with Engine(tmp_path / "store", registry=options, max_layer_size=5 << 20) as engine:
        engine.image("example.org/app:1", pull="always")
        assert engine.registry == options and engine.max_layer_size == 5 << 20
    with Engine(tmp_path / "store") as engine:
        engine.image("example.org/app:1", pull="always")
    assert [(k["options"], k["max_layer_size"]) for k in seen] == [(options, 5 << 20), (None, None)]


def test_registry_options_reach_the_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def push_image(store: Any, image: Image, text: str, **kwargs: Any) -> Any:
        seen.append(kwargs.get("options"))
        return SimpleNamespace(reference=text, uploaded=0, layers=0, bytes_sent=0, digest="sha256:" + "1" * 64)

    monkeypatch.setattr(registry, "push_image", push_image)
    options = RegistryOptions(insecure=("reg.lan:5000",))
    with Engine(tmp_path / "store", registry=options) as engine:
        engine.push(Image(digest="sha256:" + "0" * 64), "reg.lan:5000/app:1")
    assert seen == [options]


def test_registry_options_and_cap_reach_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_minicontainer.build as build_package

    seen: list[dict[str, Any]] = []

    def build(engine: Engine, *args: Any, **kwargs: Any) -> Image:
        seen.append(kwargs)
        return Image(digest="sha256:" + "0" * 64)

    monkeypatch.setattr(build_package, "build", build)
    options = RegistryOptions(timeout=9.0)
    with Engine(tmp_path / "store", registry=options, max_layer_size=1 << 30) as engine:
        engine.build("FROM scratch\n", tmp_path)
    assert seen[0]["registry_options"] == options and seen[0]["max_layer_size"] == 1 << 30
    assert not any(os.environ.get(name) for name in ENV)
