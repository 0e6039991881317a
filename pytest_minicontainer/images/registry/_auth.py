"""Credentials from the files Docker and Podman write, and ``WWW-Authenticate`` challenges.

Lookup order follows containers-auth.json(5): ``$REGISTRY_AUTH_FILE``, then
``$XDG_RUNTIME_DIR/containers/auth.json``, then ``~/.docker/config.json``; the first file with
an entry for the registry wins.  Entries hold ``auth`` (base64 ``user:password``) or
``username``/``password``; keys may be a bare host or a URL (Docker writes
``https://index.docker.io/v1/`` for Docker Hub).  Credential helpers (``credsStore``) are not
run: a pull must not start programs the user did not name.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from .._oci import parse_json
from ._reference import DOCKER_HUB

__all__ = ["Credentials", "credential_files", "find_credentials", "find_credentials_in", "parse_challenge"]

Credentials = tuple[str, str]
_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/",
             "https://index.docker.io/v1", "https://registry-1.docker.io")
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def credential_files() -> list[Path]:
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker_config = os.environ.get("DOCKER_CONFIG")
    files.append(Path(docker_config) / "config.json" if docker_config
                 else Path(os.path.expanduser("~")) / ".docker" / "config.json")
    return files


def _key_host(key: str) -> str:
    host = key.split("://", 1)[-1]
    return host.split("/", 1)[0]


def _decode(entry: object, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None
    if entry.get("username") and entry.get("password"):
        return str(entry["username"]), str(entry["password"])
    return None


def find_credentials(registry: str) -> Credentials | None:
    """``(user, password)`` for ``registry`` (``docker.io`` or ``host[:port]``), or None."""
    found = find_credentials_in(registry)
    return found[0] if found is not None else None


def find_credentials_in(registry: str) -> tuple[Credentials, Path] | None:
    """The credentials for ``registry`` and the file they came from.

    The file is kept because a refused password is fixed in that file: an error that only said
    "wrong credentials" would leave the user guessing which of three files holds them.
    """
    wanted = set(_HUB_KEYS) if registry == DOCKER_HUB else {registry}
    for path in credential_files():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        try:
            auths = parse_json(data, "credentials file", str(path)).get("auths") or {}
        except Exception:  # a broken file of another tool must not stop a pull
            continue
        if not isinstance(auths, dict):
            continue
        for key, entry in auths.items():
            if key in wanted or _key_host(str(key)) in wanted:
                found = _decode(entry, str(path))
                if found is not None:
                    return found, path
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``'Bearer realm="x",service="y"'`` -> ``("bearer", {"realm": "x", "service": "y"})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def token_from(body: bytes, where: str) -> str:
    doc = parse_json(body, "token response", where)
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        from ...errors import RegistryError

        raise RegistryError(f"the token service {where} answered without a token", registry=where)
    return token


