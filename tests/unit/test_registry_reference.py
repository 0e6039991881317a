"""Registry references normalise the way Docker's do; bad ones say what is wrong."""

from __future__ import annotations

import pytest

from pytest_minicontainer.errors import ImageError
from pytest_minicontainer.images._platform import parse_platform
from pytest_minicontainer.images._reference import parse_reference
from pytest_minicontainer.images.registry import RegistryOptions, parse_registry_ref
from pytest_minicontainer.images.registry._reference import is_loopback

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "registry", "endpoint", "repo", "tag", "digest", "store_tag"), [
    ("alpine", "docker.io", "registry-1.docker.io", "library/alpine", "latest", None, "alpine:latest"),
    ("python:3.12-slim", "docker.io", "registry-1.docker.io", "library/python", "3.12-slim", None,
     "python:3.12-slim"),
    ("docker://bitnami/redis:7", "docker.io", "registry-1.docker.io", "bitnami/redis", "7", None, "bitnami/redis:7"),
    ("docker.io/library/alpine:3", "docker.io", "registry-1.docker.io", "library/alpine", "3", None, "alpine:3"),
    ("index.docker.io/x/y", "docker.io", "registry-1.docker.io", "x/y", "latest", None, "x/y:latest"),
    ("ghcr.io/org/app:1.2", "ghcr.io", "ghcr.io", "org/app", "1.2", None, "ghcr.io/org/app:1.2"),
    (f"quay.io/x/y@{D}", "quay.io", "quay.io", "x/y", None, D, None),
    (f"quay.io/x/y:1@{D}", "quay.io", "quay.io", "x/y", "1", D, None),
    ("localhost:5000/x", "localhost:5000", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
    ("localhost/x:2", "localhost", "localhost", "x", "2", None, "localhost/x:2"),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "127.0.0.1:5000", "a/b/c", "t", None,
     "127.0.0.1:5000/a/b/c:t"),
])
def test_normalisation(text: str, registry: str, endpoint: str, repo: str, tag: str | None,
                       digest: str | None, store_tag: str | None) -> None:
    ref = parse_registry_ref(text)
    assert (ref.registry, ref.endpoint, ref.repository, ref.tag, ref.digest) == (registry, endpoint, repo, tag, digest)
    assert ref.store_tag == store_tag
    assert ref.reference == (digest or tag)


@pytest.mark.parametrize(("text", "why"), [
    ("Alpine", "not a valid repository"), ("alpine:", "not a valid tag"), ("a@sha256:12", "not a sha256"),
    ("x/-bad", "not a valid repository"), ("ghcr.io/", "not a valid repository"),
])
def test_bad_references(text: str, why: str) -> None:
    with pytest.raises(ImageError, match=why):
        parse_registry_ref(text)


def test_parse_reference_routes_names_to_registries() -> None:
    assert parse_reference("docker://alpine").transport == "docker"
    assert parse_reference("localhost:5000/x:1").transport == "store"  # store first, then pull
    assert parse_reference(f"ghcr.io/a/b@{D}").transport == "store"


@pytest.mark.parametrize(("host", "loop"), [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:80", True), ("127.1.2.3", True),
    ("[::1]:5000", True), ("::1", True), ("10.0.0.1:5000", False), ("example.com", False), ("ghcr.io", False),
])
def test_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_platforms() -> None:
    assert parse_platform("linux/arm64/v8") == ("linux", "arm64", "v8")
    assert parse_platform("arm64") == ("linux", "arm64", "")
    with pytest.raises(ImageError, match="OS/ARCH"):
        parse_platform("a/b/c/d")


def test_options_from_env() -> None:
    opts = RegistryOptions.from_env({"MINICONTAINER_REGISTRY_MIRROR": "https://mirror.gcr.io/",
                                     "MINICONTAINER_INSECURE_REGISTRIES": "reg.lan:5000, 10.0.0.2"})
    assert opts.mirror == "mirror.gcr.io"
    assert opts.insecure == ("reg.lan:5000", "10.0.0.2")
    assert RegistryOptions.from_env({}) == RegistryOptions()


def test_timeout_from_env() -> None:
    assert RegistryOptions.from_env({"MINICONTAINER_REGISTRY_TIMEOUT": "2.5"}).timeout == 2.5
    assert RegistryOptions.from_env({"MINICONTAINER_REGISTRY_TIMEOUT": " "}).timeout == 30.0
    for bad in ("soon", "0", "-1", "nan", "inf"):
        with pytest.raises(ImageError, match=rf"MINICONTAINER_REGISTRY_TIMEOUT='{bad}' is not a number of seconds"
                                             r" greater than 0.*e\.g\. MINICONTAINER_REGISTRY_TIMEOUT=60"):
            RegistryOptions.from_env({"MINICONTAINER_REGISTRY_TIMEOUT": bad})
