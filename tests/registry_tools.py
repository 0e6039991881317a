"""Loopback registries for the pull tests: Debian's ``docker-registry`` and a proxy we control.

* :class:`Registry` runs ``/usr/bin/docker-registry`` on 127.0.0.1 with storage in a tmp dir,
  optionally with ``htpasswd`` auth (the registry provisions the file itself with user
  ``docker`` and logs the password, so no bcrypt tool is needed).
* :class:`Proxy` is a ``ThreadingHTTPServer`` on 127.0.0.1 in front of a registry: it records
  every request, lets a test answer some requests itself (429, 5xx, redirects, corrupt or
  stalled bodies) and can play a Bearer token service (``/token``) that guards the registry.
* :func:`push` copies an OCI layout into a registry with ``skopeo copy``.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.imagetools import TarBuilder, _put, image_config, layer_diff_id, write_manifest

REGISTRY_BIN = "/usr/bin/docker-registry"
_HOP = {"connection", "transfer-encoding", "keep-alive"}


def need_tools() -> None:
    """Skip, naming the Debian packages, when the registry or skopeo is missing."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"needs {REGISTRY_BIN}: apt-get install docker-registry")
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo to push test images: apt-get install skopeo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Registry:
    """``docker-registry serve`` on 127.0.0.1:<free port>; ``stop()`` ends it."""

    def __init__(self, root: Path, *, htpasswd: bool = False) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = root / "registry.log"
        self.credentials: tuple[str, str] | None = None
        auth = (f"auth:\n  htpasswd:\n    realm: test\n    path: {root / 'htpasswd'}\n" if htpasswd else "")
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n{auth}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log)
        try:
            wait_for(self._up, f"docker-registry on {self.address} (log: {self.log})")
            if htpasswd:
                wait_for(self._password_logged, "the provisioned htpasswd password")
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(self.address, timeout=1)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            conn.close()
            return True
        except OSError:
            return False

    def _password_logged(self) -> bool:
        m = re.search(r'password=(\S+) user=(\w+)', self.log.read_text())
        if m:
            self.credentials = (m.group(2), m.group(1).strip('"'))
        return m is not None

    def blob_file(self, digest: str) -> Path:
        """Where the registry's filesystem storage keeps ``digest`` (for tests that damage a blob)."""
        hexpart = digest.removeprefix("sha256:")
        return self.root / "data/docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def push(layout: Path, tag: str, dest: str, *, creds: tuple[str, str] | None = None, all_: bool = False) -> None:
    """``skopeo copy oci:LAYOUT:TAG docker://DEST`` (plain HTTP, no signature policy)."""
    argv = ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "-q"]
    if creds:
        argv.append(f"--dest-creds={creds[0]}:{creds[1]}")
    if all_:
        argv.append("--all")
    argv += [f"oci:{layout}:{tag}", f"docker://{dest}"]
    env = {**os.environ, "HOME": str(layout.parent)}  # skopeo writes under $HOME; keep it in tmp
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{argv} failed: {proc.stderr}")


# -- images -------------------------------------------------------------------------------

def gz_layer(files: dict[str, bytes]) -> bytes:
    b = TarBuilder()
    for name, data in files.items():
        b.file(name, data)
    return gzip.compress(b.bytes(), mtime=0)


def write_layout(root: Path, layers: list[bytes], ref: str = "latest", arch: str = "amd64",
                 **cfg: Any) -> str:
    """An OCI layout with one image; returns its manifest digest (what the registry will serve)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = image_config([layer_diff_id(b) for b in layers], **cfg)
    config["architecture"] = arch
    digest, mbytes, _, _ = write_manifest(root, layers, config)
    _add_index_entry(root, {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                            "size": len(mbytes), "annotations": {"org.opencontainers.image.ref.name": ref}})
    return digest


def _add_index_entry(root: Path, entry: dict[str, Any]) -> None:
    path = root / "index.json"
    index = json.loads(path.read_text()) if path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}) != entry.get("annotations")] + [entry]
    path.write_text(json.dumps(index))


def write_multiarch_layout(root: Path, arches: dict[str, bytes], ref: str = "latest") -> tuple[str, dict[str, str]]:
    """An index with one manifest per ``{"amd64": layer}`` entry plus a BuildKit attestation."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entries, digests = [], {}
    for arch, layer in arches.items():
        config = image_config([layer_diff_id(layer)])
        config["architecture"] = arch
        digest, mbytes, _, _ = write_manifest(root, [layer], config)
        digests[arch] = digest
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                        "size": len(mbytes), "platform": {"os": "linux", "architecture": arch}})
    att, abytes, _, _ = write_manifest(root, [gz_layer({"sbom.json": b"{}"})])
    entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att,
                    "size": len(abytes), "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                    "vnd.docker.reference.digest": digests[next(iter(arches))]}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}).encode()
    idigest = _put(root, index)
    _add_index_entry(root, {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idigest,
                            "size": len(index), "annotations": {"org.opencontainers.image.ref.name": ref}})
    return idigest, digests


# -- the proxy ----------------------------------------------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    size: int = 0  # bytes of the request's body


Hook = Callable[["_Handler"], bool]  # return True when the hook answered the request


@dataclass
class Proxy:
    """Forward to ``upstream`` (``host:port``), record requests, let hooks answer some of them.

    With ``token=True`` the proxy guards the registry with the Bearer flow: requests without
    ``Authorization: Bearer <token>`` get a 401 challenge naming ``/token`` on this server,
    which hands out a token (to anyone, or only to ``token_creds`` sent with Basic auth).
    """

    upstream: str | None = None
    token: bool = False
    token_creds: tuple[str, str] | None = None
    hooks: list[Hook] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    address: str = ""

    def __post_init__(self) -> None:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self, prefix: str = "") -> list[str]:
        return [s.path for s in self.seen if s.path.startswith(prefix)]

    def blob_gets(self) -> list[str]:
        return [s.path.rsplit("/", 1)[-1] for s in self.seen if s.method == "GET" and "/blobs/" in s.path]

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_TOKEN = "test-token-123"


class _Handler(BaseHTTPRequestHandler):
    owner: Proxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    # pushes: the body is read before any hook sees the request (a keep-alive connection must
    # not be left holding it) and forwarded with it
    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        p = self.owner
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        p.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, len(self.body)))
        for hook in list(p.hooks):
            if hook(self):
                return
        if p.token and self._token_flow():
            return
        if p.upstream is None:
            self.reply(404)
            return
        self.forward()

    def _token_flow(self) -> bool:
        """Answer /token, or a 401 challenge for requests without the token; False to forward."""
        p = self.owner
        if self.path.startswith("/token"):
            if p.token_creds is not None:
                want = "Basic " + base64.b64encode(f"{p.token_creds[0]}:{p.token_creds[1]}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    self.reply(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}')
                    return True
            self.reply(200, json.dumps({"token": _TOKEN, "expires_in": 300}).encode(),
                       {"Content-Type": "application/json"})
            return True
        if self.headers.get("Authorization") != f"Bearer {_TOKEN}":
            challenge = f'Bearer realm="http://{p.address}/token",service="test-registry"'
            if self.path != "/v2/":
                repo = self.path[4:].split("/manifests/")[0].split("/blobs/")[0]
                challenge += f',scope="repository:{repo}:pull"'
            self.reply(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            return True
        return False

    def forward_body_prefix(self, n: int) -> None:
        """Write the first ``n`` bytes of the upstream body (after headers the caller sent)."""
        conn = http.client.HTTPConnection(self.owner.upstream or "", timeout=30)
        conn.request("GET", self.path)
        body = conn.getresponse().read()
        conn.close()
        self.wfile.write(body[:n])
        self.wfile.flush()

    def forward(self, body_filter: Callable[[bytes], bytes] | None = None) -> None:
        conn = http.client.HTTPConnection(self.owner.upstream or "", timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
        conn.request(self.command, self.path, body=getattr(self, "body", b"") or None, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if body_filter is not None:
            body = body_filter(body)
        self.send_response(resp.status)
        upstream = self.owner.upstream or ""
        for k, v in resp.getheaders():
            if k.lower() == "location":  # an upload's next URL: through this proxy too
                v = v.replace(f"//{upstream}/", f"//{self.owner.address}/")
            if k.lower() not in _HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
