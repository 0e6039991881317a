"""Credential files (Docker's and containers-auth.json), challenges, and the HTTP rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pytest_minicontainer.errors import RegistryError
from pytest_minicontainer.images.registry import RegistryOptions
from pytest_minicontainer.images.registry._auth import find_credentials, parse_challenge
from pytest_minicontainer.images.registry._client import RegistryClient, _retry_after


def _auth(user: str, pw: str) -> str:
    return base64.b64encode(f"{user}:{pw}".encode()).decode()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / ".docker").mkdir()
    return tmp_path


def test_docker_config(home: Path) -> None:
    (home / ".docker/config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": _auth("hub", "pw1")},
        "ghcr.io": {"auth": _auth("gh", "pw:with:colons")},
        "https://reg.lan:5000/v2/": {"username": "u", "password": "p"},
        "broken.io": {"auth": "!!notbase64"},
    }, "credsStore": "desktop"}))
    assert find_credentials("docker.io") == ("hub", "pw1")
    assert find_credentials("ghcr.io") == ("gh", "pw:with:colons")
    assert find_credentials("reg.lan:5000") == ("u", "p")
    assert find_credentials("broken.io") is None
    assert find_credentials("quay.io") is None


def test_order_auth_file_then_xdg_then_docker(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / ".docker/config.json").write_text(json.dumps({"auths": {"r.io": {"auth": _auth("docker", "1")},
                                                                    "only.docker": {"auth": _auth("d", "2")}}}))
    xdg = home / "run"
    (xdg / "containers").mkdir(parents=True)
    (xdg / "containers/auth.json").write_text(json.dumps({"auths": {"r.io": {"auth": _auth("xdg", "3")}}}))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert find_credentials("r.io") == ("xdg", "3")
    explicit = home / "auth.json"
    explicit.write_text(json.dumps({"auths": {"r.io": {"auth": _auth("explicit", "4")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert find_credentials("r.io") == ("explicit", "4")
    assert find_credentials("only.docker") == ("d", "2")  # earlier files without the entry are skipped
    explicit.write_text("{not json")
    assert find_credentials("r.io") == ("xdg", "3")  # a broken file does not stop the lookup


def test_parse_challenge() -> None:
    scheme, params = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                     'scope="repository:library/alpine:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/alpine:pull"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


def test_retry_after() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


def test_plain_http_only_for_loopback_and_insecure() -> None:
    client = RegistryClient("ghcr.io", "x/y", RegistryOptions())
    assert not client.plain_http
    with pytest.raises(RegistryError, match="plain HTTP is allowed only for loopback"):
        client.request("GET", "http://ghcr.io/v2/")
    assert RegistryClient("127.0.0.1:5000", "x", RegistryOptions()).plain_http
    assert RegistryClient("reg.lan:5000", "x", RegistryOptions(insecure=("reg.lan:5000",))).plain_http
