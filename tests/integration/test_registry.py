"""Pulls from a real registry (Debian's docker-registry on 127.0.0.1), pushed to with skopeo.

Faults (429, 5xx, timeouts, redirects, corrupt or stalled bodies) come from a loopback proxy
the test controls (:mod:`tests.registry_tools`); every server is stopped by its fixture.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer.errors import ImageError, ImageNotFound, RegistryError
from pytest_minicontainer.images import registry as reg
from pytest_minicontainer.images import resolve
from pytest_minicontainer.images.registry import RegistryOptions, pull_image
from pytest_minicontainer.store import Store
from tests.registry_tools import (
    Proxy,
    Registry,
    free_port,
    gz_layer,
    push,
    wait_for,
    write_layout,
    write_multiarch_layout,
)

REPO = Path(__file__).resolve().parents[2]
FAST = RegistryOptions(retries=2, backoff=0.05, timeout=5)


@pytest.fixture
def proxy(registry: Registry) -> Iterator[Proxy]:
    with Proxy(upstream=registry.address) as p:
        yield p


_counter = iter(range(10**6))


def pushed(registry: Registry, tmp_path: Path, files: dict[str, bytes], *, base: bytes | None = None,
           name: str | None = None, **cfg: object) -> tuple[str, str]:
    """Push a fresh image (``base`` layer + one layer of ``files``); returns (repo:tag, digest)."""
    name = name or f"test/img{next(_counter)}:v1"
    layout = tmp_path / f"layout-{next(_counter)}"
    layers = [*([base] if base is not None else []), gz_layer(files)]
    digest = write_layout(layout, layers, ref="t", **cfg)
    push(layout, "t", f"{registry.address}/{name}")
    return name, digest


def read(image_dirs: tuple[str, ...], rel: str) -> bytes:
    for d in reversed(image_dirs):
        p = Path(d) / rel
        if p.exists():
            return p.read_bytes()
    raise AssertionError(f"{rel} not in any layer")


# -- references, tags, digests --------------------------------------------------------------

def test_pull_by_tag_and_by_digest(registry: Registry, store: Store, tmp_path: Path) -> None:
    name, digest = pushed(registry, tmp_path, {"hello.txt": b"hi\n"}, Cmd=["/bin/true"])
    image = resolve(store, f"{registry.address}/{name}")
    assert image.digest == digest  # the registry's manifest digest
    assert read(image.layer_dirs, "hello.txt") == b"hi\n"
    assert image.config.cmd == ("/bin/true",)
    assert f"{registry.address}/{name}" in store.load_image(digest).tags
    other = Store(tmp_path / "other")
    by_digest = resolve(other, f"docker://{registry.address}/{name.split(':')[0]}@{digest}")
    assert by_digest.digest == digest and not other.load_image(digest).tags


def test_index_platforms(registry: Registry, store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    _, digests = write_multiarch_layout(layout, {"amd64": gz_layer({"arch": b"amd64"}),
                                                 "arm64": gz_layer({"arch": b"arm64"})})
    push(layout, "latest", f"{registry.address}/test/multi:1", all_=True)
    ref = f"{registry.address}/test/multi:1"
    from pytest_minicontainer.images._platform import host_platform

    if host_platform()[1] in digests:
        host = resolve(store, ref)
        assert host.digest == digests[host_platform()[1]]
    resolve(store, ref, platform="linux/amd64")
    arm = pull_image(store, ref, platform="linux/arm64")
    assert arm.digest == digests["arm64"] and read(arm.layer_dirs, "arch") == b"arm64"
    amd = resolve(store, ref, platform="linux/amd64", pull="never")  # recorded per platform
    assert amd.digest == digests["amd64"] and read(amd.layer_dirs, "arch") == b"amd64"
    assert resolve(store, ref, platform="linux/arm64/v8", pull="never").digest == digests["arm64"]
    with pytest.raises(ImageError, match=r"no manifest for platform linux/s390x.*available: linux/amd64,"
                                         r" linux/arm64\)") as info:
        pull_image(Store(tmp_path / "s3"), ref, platform="linux/s390x")
    assert "unknown" not in str(info.value)  # the attestation manifest is not a platform


def test_index_digest_is_found_in_the_store_after_one_pull(registry: Registry, tmp_path: Path) -> None:
    """The store keeps the manifest chosen from an index, not the index: NAME@<index digest>
    must still be found offline, per platform, once pulled."""
    from pytest_minicontainer import Engine
    from pytest_minicontainer.images._platform import host_platform

    host = host_platform()[1]
    other = "s390x" if host != "s390x" else "riscv64"
    layout = tmp_path / "multi"
    index, digests = write_multiarch_layout(layout, {host: gz_layer({"arch": host.encode()}),
                                                     other: gz_layer({"arch": other.encode()})})
    name = f"test/multi{next(_counter)}"
    push(layout, "latest", f"{registry.address}/{name}:1", all_=True)
    store = Store(tmp_path / "s")
    with Proxy(upstream=registry.address) as proxy:
        ref = f"{proxy.address}/{name}@{index}"
        image = resolve(store, ref)
        assert image.digest == digests[host] and read(image.layer_dirs, "arch") == host.encode()
        assert proxy.blob_gets()
        proxy.seen.clear()
        assert resolve(store, ref).digest == digests[host]
        assert resolve(store, ref, pull="never").digest == digests[host]
        assert resolve(store, f"docker://{ref}", pull="never").digest == digests[host]
        assert resolve(store, ref, platform=f"linux/{host}", pull="never").digest == digests[host]
        assert proxy.seen == []  # all of them from the store
        assert resolve(store, ref, platform=f"linux/{other}").digest == digests[other]
        proxy.seen.clear()
        assert resolve(store, ref, platform=f"linux/{other}", pull="never").digest == digests[other]
        assert resolve(store, ref).digest == digests[host]  # recorded per platform
        assert proxy.seen == []
    # The registry is gone now: what was pulled is still there, for resolve and for an Engine.
    assert resolve(store, ref).digest == digests[host]
    with Engine(store=tmp_path / "s") as engine:
        assert engine.image(ref).digest == digests[host]
        assert engine.image(ref, platform=f"linux/{other}").digest == digests[other]
    with pytest.raises(ImageNotFound, match=r"pull policy is 'never'"):
        resolve(Store(tmp_path / "empty"), ref, pull="never")


def test_unknown_repository_and_tag(registry: Registry, store: Store, tmp_path: Path) -> None:
    name, _ = pushed(registry, tmp_path, {"a": b"a"})
    for ref in (f"{registry.address}/no/such:1", f"{registry.address}/{name.split(':')[0]}:nosuchtag"):
        with pytest.raises(ImageNotFound, match=r"not found on registry 127\.0\.0\.1:\d+") as info:
            resolve(store, ref)
        assert ref.split("/", 1)[1] in str(info.value)


def test_unreachable_registry_names_its_address(store: Store) -> None:
    port = free_port()  # nothing listens there
    start = time.monotonic()
    with pytest.raises(RegistryError, match=rf"not in the store.*127\.0\.0\.1:{port}.*unreachable") as info:
        resolve(store, f"127.0.0.1:{port}/x/y:1")
    assert info.value.registry == f"127.0.0.1:{port}"
    assert time.monotonic() - start < 5  # refused connections are not retried


# -- integrity, sharing, policy ---------------------------------------------------------------

def test_digest_mismatch_discards_the_blob(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    name, digest = pushed(registry, tmp_path, {"payload": b"x" * 5000})

    def corrupt(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        if "/blobs/" in h.path and h.command == "GET" and not h.path.endswith(_config_hex(registry, name)):
            h.forward(lambda body: body[:-8] + b"\0" * 8)
            return True
        return False

    proxy.hooks.append(corrupt)
    with pytest.raises(ImageError, match=r"does not match its digest.*discarded"):
        pull_image(store, f"{proxy.address}/{name}", options=FAST)
    assert list((store.root / "layers").iterdir()) == []
    assert [p for p in (store.root / "tmp").iterdir() if not p.name.endswith(".owner")] == []
    proxy.hooks.clear()
    assert pull_image(store, f"{proxy.address}/{name}", options=FAST).digest == digest


def test_blob_larger_than_its_descriptor_is_not_downloaded(registry: Registry, store: Store,
                                                           tmp_path: Path) -> None:
    """A registry whose copy of a blob grew announces the new length: refused before the body."""
    files = {"grown": b"grown " + os.urandom(16)}
    name, _ = pushed(registry, tmp_path, files)
    layer = sha256_of(gz_layer(files))
    size = registry.blob_file(layer).stat().st_size
    extra = 5 << 20
    with open(registry.blob_file(layer), "ab") as f:
        f.write(b"\0" * extra)
    progress: list[tuple[str, int]] = []
    with pytest.raises(ImageError, match=rf"blob {layer} from registry {registry.address} is not the {size} bytes"
                                         rf" the image's manifest gives: the registry announced {size + extra}"
                                         r" bytes") as info:
        pull_image(store, f"{registry.address}/{name}", options=FAST,
                   progress=lambda digest, done, total: progress.append((digest, done)))
    assert not isinstance(info.value, (ImageNotFound, RegistryError))
    assert [done for digest, done in progress if digest == layer] == []  # not one byte of it was read
    assert list((store.root / "layers").iterdir()) == []
    assert [p for p in (store.root / "tmp").iterdir() if not p.name.endswith(".owner")] == []


def test_blob_that_goes_on_is_cut_off_at_its_size(registry: Registry, proxy: Proxy, store: Store,
                                                  tmp_path: Path) -> None:
    """Without a Content-Length the size in the manifest still bounds the download."""
    files = {"endless": os.urandom(1000)}
    name, _ = pushed(registry, tmp_path, files)
    blob = gz_layer(files)
    limit = 256 << 20
    sent: list[int] = []

    def endless(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        if h.command != "GET" or not h.path.endswith(sha256_of(blob)):
            return False
        h.send_response(200)
        h.send_header("Connection", "close")  # no Content-Length: the body ends when the connection does
        h.end_headers()
        h.close_connection = True
        n = 0
        try:
            h.wfile.write(blob)
            n += len(blob)
            while n < limit:
                h.wfile.write(b"\0" * 65536)
                n += 65536
        except OSError:  # the client hung up
            pass
        sent.append(n)
        return True

    proxy.hooks.append(endless)
    with pytest.raises(ImageError, match=rf"blob {sha256_of(blob)} from registry {proxy.address} is not the"
                                         rf" {len(blob)} bytes the image's manifest gives: {len(blob) + 1} bytes"
                                         r" had arrived when the download was stopped"):
        pull_image(store, f"{proxy.address}/{name}", options=FAST)
    wait_for(lambda: bool(sent), "the proxy to stop sending")
    assert sent[0] < limit  # the client closed the connection, it did not read on
    assert [p for p in (store.root / "tmp").iterdir() if not p.name.endswith(".owner")] == []


def _config_hex(registry: Registry, name: str) -> str:
    import http.client

    repo, tag = name.split(":")
    conn = http.client.HTTPConnection(registry.address)
    conn.request("GET", f"/v2/{repo}/manifests/{tag}",
                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    manifest = json.loads(conn.getresponse().read())
    conn.close()
    return str(manifest["config"]["digest"])


def test_shared_blobs_are_not_downloaded_again(registry: Registry, proxy: Proxy, store: Store,
                                               tmp_path: Path) -> None:
    base = gz_layer({"base.txt": b"shared base " * 1000})
    first, _ = pushed(registry, tmp_path, {"one": b"1"}, base=base)
    second, _ = pushed(registry, tmp_path, {"two": b"2"}, base=base)
    resolve(store, f"{proxy.address}/{first}")
    from tests.imagetools import sha256

    base_blob = sha256(base)
    assert base_blob in proxy.blob_gets()
    proxy.seen.clear()
    image = resolve(store, f"{proxy.address}/{second}")
    assert base_blob not in proxy.blob_gets()
    assert len(proxy.blob_gets()) == 2  # the config and the new layer only
    assert read(image.layer_dirs, "base.txt").startswith(b"shared base")


def test_pull_policies(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    name, first = pushed(registry, tmp_path, {"v": b"1"})
    ref = f"{proxy.address}/{name}"
    with pytest.raises(ImageNotFound, match=r"pull policy is 'never'"):
        resolve(store, ref, pull="never")
    assert proxy.seen == []
    assert resolve(store, ref).digest == first
    proxy.seen.clear()
    assert resolve(store, ref, pull="missing").digest == first
    assert resolve(store, ref, pull="never").digest == first
    assert proxy.seen == []  # found in the store: the registry is not asked
    assert resolve(store, ref, pull="always").digest == first
    assert proxy.blob_gets() == [] and any("/manifests/v1" in p for p in proxy.paths())
    _, second = pushed(registry, tmp_path, {"v": b"2"}, name=name)  # the tag moves
    assert resolve(store, ref, pull="missing").digest == first
    assert resolve(store, ref, pull="always").digest == second
    assert resolve(store, ref, pull="missing").digest == second  # the tag now names the new image
    with pytest.raises(ImageError, match="pull policy 'sometimes'"):
        resolve(store, ref, pull="sometimes")


def test_an_engine_asks_a_registry_once_per_session(registry: Registry, proxy: Proxy, tmp_path: Path) -> None:
    """``always`` checks the tag once per Engine (a suite would otherwise ask once per test, and
    count against the registry's pull limit); a registry that did not answer is not asked again."""
    from pytest_minicontainer import Engine

    name, digest = pushed(registry, tmp_path, {"v": b"1"})
    ref = f"{proxy.address}/{name}"
    with Engine(store=tmp_path / "store") as engine:
        assert [engine.image(ref, pull="always").digest for _ in range(3)] == [digest] * 3
        assert sum("/manifests/" in path for path in proxy.paths()) == 1
    with Engine(store=tmp_path / "store") as engine:  # a new session asks again
        proxy.seen.clear()
        assert engine.image(ref, pull="always").digest == digest
        assert sum("/manifests/" in path for path in proxy.paths()) == 1
    port = free_port()  # nothing listens there
    dead = f"127.0.0.1:{port}/x/y:1"
    with Engine(store=tmp_path / "store") as engine:
        with pytest.raises(RegistryError, match="unreachable") as first:
            engine.image(dead)
        assert first.value.unreachable
        with socket.socket() as listener:  # now something listens: it must not be asked
            listener.bind(("127.0.0.1", port))
            listener.listen()
            listener.settimeout(0.5)
            with pytest.raises(RegistryError, match="asked once already"):
                engine.image(dead)
            with pytest.raises(socket.timeout):
                listener.accept()


# -- processes ------------------------------------------------------------------------------

_PULL_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from pytest_minicontainer.images.registry import pull_image, RegistryOptions
from pytest_minicontainer.store import Store
image = pull_image(Store(sys.argv[1]), sys.argv[2], options=RegistryOptions(retries=1, backoff=0.05))
print(image.digest)
"""


def _pull_process(store: Store, ref: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _PULL_SCRIPT.format(repo=str(REPO)), str(store.root), ref],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_download_once(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    name, digest = pushed(registry, tmp_path, {"big": os.urandom(200_000)}, base=gz_layer({"b": b"b"}))
    gate = threading.Event()

    def slow_blobs(h: object) -> bool:
        if "/blobs/" in getattr(h, "path", ""):
            gate.wait(10)  # hold the first downloads until both processes have started
        return False

    proxy.hooks.append(slow_blobs)
    procs = [_pull_process(store, f"{proxy.address}/{name}") for _ in range(2)]
    time.sleep(1.0)
    gate.set()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o[0].strip() for o in outs} == {digest}
    gets = proxy.blob_gets()
    assert len(gets) == len(set(gets)) == 3  # two layers and the config, each fetched once


def test_pull_killed_halfway_then_succeeds(registry: Registry, proxy: Proxy, store: Store,
                                           tmp_path: Path) -> None:
    base = gz_layer({"base": b"base"})
    name, digest = pushed(registry, tmp_path, {"big": os.urandom(300_000)}, base=base)
    from tests.imagetools import sha256

    stalled = threading.Event()

    def stall_big_layer(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        blob = h.path.rsplit("/", 1)[1]
        if h.command == "GET" and "/blobs/" in h.path and blob not in (sha256(base), _config_hex(registry, name)):
            h.send_response(200)  # the blob's true length (a wrong one is refused before the body)
            h.send_header("Content-Length", str(registry.blob_file(blob).stat().st_size))
            h.end_headers()
            h.wfile.write(b"\0" * 1000)
            h.wfile.flush()
            stalled.set()
            time.sleep(30)  # until the client is killed (the server thread is a daemon)
            return True
        return False

    proxy.hooks.append(stall_big_layer)
    proc = _pull_process(store, f"{proxy.address}/{name}")
    try:
        assert stalled.wait(30), proc.communicate()
        wait_for(lambda: len(list((store.root / "layers").iterdir())) == 1, "the base layer to be unpacked")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    leftovers = [p for p in (store.root / "tmp").iterdir() if not p.name.endswith(".owner")]
    assert leftovers  # the half-downloaded blob
    proxy.hooks.clear()
    proxy.seen.clear()
    image = pull_image(store, f"{proxy.address}/{name}", options=FAST)
    assert image.digest == digest and store.image_complete(image)
    assert sha256(base) not in proxy.blob_gets()  # the finished layer was kept
    assert [p for p in (store.root / "tmp").iterdir() if not p.name.endswith(".owner")] == []


# -- auth -----------------------------------------------------------------------------------

def _auth_json(path: Path, address: str, creds: tuple[str, str], url_key: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"https://{address}" if url_key else address
    path.write_text(json.dumps({"auths": {key: {"auth": base64.b64encode(":".join(creds).encode()).decode()}}}))
    return path


def test_basic_auth_from_credential_files(auth_registry: Registry, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth_registry.credentials is not None
    layout = tmp_path / "layout"
    digest = write_layout(layout, [gz_layer({"secret": b"s"})], ref="t")
    push(layout, "t", f"{auth_registry.address}/private/app:1", creds=auth_registry.credentials)
    ref = f"{auth_registry.address}/private/app:1"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RegistryError, match=r"wants a user name and password.*config\.json"):
        resolve(Store(tmp_path / "s0"), ref)
    _auth_json(tmp_path / "home/.docker/config.json", auth_registry.address, auth_registry.credentials,
               url_key=True)
    assert resolve(Store(tmp_path / "s1"), ref).digest == digest
    (tmp_path / "home/.docker/config.json").unlink()
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "auth.json", auth_registry.address,
                                                            auth_registry.credentials)))
    assert resolve(Store(tmp_path / "s2"), ref).digest == digest


def test_wrong_basic_credentials_are_reported_as_refused(auth_registry: Registry, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused password is a credentials problem, named with its file, not "image not found"."""
    assert auth_registry.credentials is not None
    layout = tmp_path / "layout"
    write_layout(layout, [gz_layer({"secret": b"w"})], ref="t")
    push(layout, "t", f"{auth_registry.address}/private/wrong:1", creds=auth_registry.credentials)
    ref = f"{auth_registry.address}/private/wrong:1"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    config = _auth_json(tmp_path / "home/.docker/config.json", auth_registry.address, ("docker", "not-the-password"),
                        url_key=True)
    address = auth_registry.address.replace(".", r"\.")
    with pytest.raises(RegistryError, match=rf"registry {address} refused the credentials for {address}") as info:
        resolve(Store(tmp_path / "s1"), ref)
    assert not isinstance(info.value, ImageNotFound)
    assert str(config) in str(info.value) and "user 'docker'" in str(info.value)
    assert "not-the-password" not in str(info.value)
    assert f"docker login {auth_registry.address}" in str(info.value)
    assert info.value.registry == auth_registry.address
    auth_file = _auth_json(tmp_path / "auth.json", auth_registry.address, ("docker", "not-the-password"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    with pytest.raises(RegistryError, match=r"refused the credentials") as info:
        pull_image(Store(tmp_path / "s2"), ref, options=FAST)
    assert str(auth_file) in str(info.value) and str(config) not in str(info.value)


@pytest.mark.parametrize("with_creds", [False, True])
def test_bearer_token_flow(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           with_creds: bool) -> None:
    name, digest = pushed(registry, tmp_path, {"t": b"token"})
    creds = ("alice", "s3cret") if with_creds else None
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with Proxy(upstream=registry.address, token=True, token_creds=creds) as guard:
        if creds:
            monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "a.json", guard.address, creds)))
        else:
            monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
        image = resolve(Store(tmp_path / "s"), f"{guard.address}/{name}")
        tokens = [s for s in guard.seen if s.path.startswith("/token")]
    assert image.digest == digest
    assert tokens and f"repository%3A{name.split(':')[0].replace('/', '%2F')}%3Apull" in tokens[0].path
    assert (tokens[0].headers.get("authorization", "").startswith("Basic ")) == with_creds
    manifests = [s for s in guard.seen if "/manifests/" in s.path]
    assert manifests[-1].headers["authorization"] == "Bearer test-token-123"
    assert "vnd.oci.image.index.v1+json" in manifests[-1].headers["accept"]
    assert "vnd.docker.distribution.manifest.v2+json" in manifests[-1].headers["accept"]


def test_redirect_to_another_host_drops_authorization(registry: Registry, tmp_path: Path) -> None:
    name, digest = pushed(registry, tmp_path, {"r": b"redirected"})
    with Proxy(upstream=registry.address) as cdn, Proxy(upstream=registry.address, token=True) as guard:
        cdn_port = cdn.address.split(":")[1]

        def to_cdn(h: object) -> bool:
            from tests.registry_tools import _Handler

            assert isinstance(h, _Handler)
            if "/blobs/" in h.path and h.headers.get("Authorization"):
                h.reply(307, headers={"Location": f"http://localhost:{cdn_port}{h.path}"})
                return True
            return False

        guard.hooks.append(to_cdn)
        image = resolve(Store(tmp_path / "s"), f"{guard.address}/{name}")
    assert image.digest == digest
    assert len(cdn.blob_gets()) == 2
    assert all("authorization" not in s.headers for s in cdn.seen)
    assert any(s.headers.get("authorization") == "Bearer test-token-123" for s in guard.seen)


# -- retries --------------------------------------------------------------------------------

def test_retries_429_with_retry_after_and_5xx(registry: Registry, proxy: Proxy, store: Store,
                                              tmp_path: Path) -> None:
    name, digest = pushed(registry, tmp_path, {"r": b"retry"})
    answers = [429, 503, 500]

    def flaky(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        if "/manifests/" in h.path and answers:
            status = answers.pop(0)
            h.reply(status, headers={"Retry-After": "1"} if status == 429 else {})
            return True
        return False

    proxy.hooks.append(flaky)
    start = time.monotonic()
    image = pull_image(store, f"{proxy.address}/{name}",
                       options=RegistryOptions(retries=3, backoff=0.05))
    assert image.digest == digest
    assert time.monotonic() - start >= 1.0  # Retry-After was honoured
    assert len([p for p in proxy.paths() if "/manifests/" in p]) == 4


def test_persistent_5xx_gives_up(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    name, _ = pushed(registry, tmp_path, {"r": b"r"})
    proxy.hooks.append(lambda h: "/manifests/" in h.path and (h.reply(502) or True))
    with pytest.raises(RegistryError, match=r"HTTP 502"):
        pull_image(store, f"{proxy.address}/{name}", options=FAST)
    assert len([p for p in proxy.paths() if "/manifests/" in p]) == FAST.retries + 1


def test_reset_connections_are_retried(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    name, digest = pushed(registry, tmp_path, {"r": b"reset"})
    resets = [True, True]

    def close_without_answer(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        if "/manifests/" in h.path and resets:
            resets.pop()
            h.close_connection = True  # no status line: http.client sees RemoteDisconnected
            return True
        return False

    proxy.hooks.append(close_without_answer)
    image = pull_image(store, f"{proxy.address}/{name}", options=FAST)
    assert image.digest == digest
    assert len([p for p in proxy.paths() if "/manifests/" in p]) == 3


def test_a_request_without_answer_is_not_repeated(registry: Registry, proxy: Proxy, store: Store,
                                                  tmp_path: Path) -> None:
    """A registry that answers /v2/ but then hangs costs one timeout, not one per retry."""
    name, _ = pushed(registry, tmp_path, {"t": b"hangs"})
    release = threading.Event()

    def hang(h: object) -> bool:
        if "/manifests/" in getattr(h, "path", ""):
            release.wait(30)  # no answer until the test ends
            return True
        return False

    proxy.hooks.append(hang)
    try:
        with pytest.raises(RegistryError, match=rf"registry {proxy.address} sent no answer to GET .*/manifests/v1"
                                                r" within 0\.5s.*MINICONTAINER_REGISTRY_TIMEOUT") as info:
            pull_image(store, f"{proxy.address}/{name}", options=RegistryOptions(timeout=0.5, retries=3, backoff=0.05))
    finally:
        release.set()
    assert info.value.registry == proxy.address and info.value.unreachable
    assert len([p for p in proxy.paths() if "/manifests/" in p]) == 1


def test_a_stalled_body_is_resumed(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    """A blob whose transfer stalls after it began is resumed with Range: the registry did answer."""
    payload = os.urandom(200_000)
    name, digest = pushed(registry, tmp_path, {"big": payload})
    blob = gz_layer({"big": payload})
    stalled = [True]

    def stall_halfway(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        if h.command == "GET" and h.path.endswith(sha256_of(blob)) and stalled:
            stalled.clear()
            h.send_response(200)
            h.send_header("Content-Length", str(len(blob)))
            h.end_headers()
            h.forward_body_prefix(50_000)
            time.sleep(1.5)  # the client's 0.5 s timeout passes in the middle of the body
            h.close_connection = True
            return True
        return False

    proxy.hooks.append(stall_halfway)
    image = pull_image(store, f"{proxy.address}/{name}", options=RegistryOptions(timeout=0.5, retries=2, backoff=0.05))
    assert image.digest == digest and read(image.layer_dirs, "big") == payload
    gets = [s for s in proxy.seen if s.path.endswith(sha256_of(blob))]
    assert len(gets) == 2 and gets[1].headers.get("range") == "bytes=50000-"


def test_a_blob_that_never_starts_is_not_requested_again(registry: Registry, proxy: Proxy, store: Store,
                                                          tmp_path: Path) -> None:
    """Headers, then silence: resuming makes sense only while bytes come."""
    files = {"silent": os.urandom(5000)}
    name, _ = pushed(registry, tmp_path, files)
    blob = gz_layer(files)
    release = threading.Event()

    def silent(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        if h.command == "GET" and h.path.endswith(sha256_of(blob)):
            h.send_response(200)
            h.send_header("Content-Length", str(len(blob)))
            h.end_headers()
            h.wfile.flush()
            release.wait(30)
            h.close_connection = True
            return True
        return False

    proxy.hooks.append(silent)
    try:
        with pytest.raises(RegistryError, match=rf"registry {proxy.address} stopped sending blob {sha256_of(blob)}"
                                                r" after 0 bytes: nothing came for 0\.5s.*"
                                                r"MINICONTAINER_REGISTRY_TIMEOUT"):
            pull_image(store, f"{proxy.address}/{name}", options=RegistryOptions(timeout=0.5, retries=3, backoff=0.05))
    finally:
        release.set()
    assert len([s for s in proxy.seen if s.path.endswith(sha256_of(blob))]) == 1
    assert [p for p in (store.root / "tmp").iterdir() if not p.name.endswith(".owner")] == []


class HungServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by stop()
                return
            self.accepted.append(conn)

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(10)
        for conn in self.accepted:
            conn.close()


def test_hung_registry_fails_after_one_timeout(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepts, never answers: one request (the HTTPS probe), no HTTP fallback, no retries."""
    monkeypatch.setenv("MINICONTAINER_REGISTRY_TIMEOUT", "0.5")
    hung = HungServer()
    try:
        start = time.monotonic()
        with pytest.raises(RegistryError) as info:
            resolve(store, f"{hung.address}/x/y:1")
        elapsed = time.monotonic() - start
    finally:
        hung.stop()
    message = str(info.value)
    assert f"registry {hung.address} sent no answer" in message and "within 0.5s" in message
    assert "set MINICONTAINER_REGISTRY_TIMEOUT to more seconds per request (now 0.5)" in message
    assert info.value.registry == hung.address and info.value.unreachable
    assert len(hung.accepted) == 1  # the request that got no answer was not sent again
    assert elapsed < 0.5 * 20  # one timeout, not minutes (loose: the machine may be busy)


# -- Docker Hub mirror --------------------------------------------------------------------

def test_docker_hub_mirror_with_fallback(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, digest = pushed(registry, tmp_path, {"m": b"mirrored"}, name="library/mirrored:1")
    with Proxy(upstream=registry.address) as mirror, Proxy(upstream=registry.address) as hub:
        monkeypatch.setattr(reg._reference, "DOCKER_HUB_ENDPOINT", hub.address)  # stands in for Docker Hub
        monkeypatch.setenv("MINICONTAINER_INSECURE_REGISTRIES", f"{hub.address}")
        monkeypatch.setenv("MINICONTAINER_REGISTRY_MIRROR", f"http://{mirror.address}")
        assert resolve(Store(tmp_path / "a"), "mirrored:1").digest == digest
        assert mirror.blob_gets() and hub.seen == []
        assert "mirrored:1" in Store(tmp_path / "a").load_image(digest).tags
        mirror.hooks.append(lambda h: h.reply(404) or True)  # the mirror lacks everything
        assert resolve(Store(tmp_path / "b"), "docker.io/library/mirrored:1").digest == digest
        assert hub.blob_gets()
    dead = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("MINICONTAINER_REGISTRY_MIRROR", dead)
    with Proxy(upstream=registry.address) as hub:
        monkeypatch.setattr(reg._reference, "DOCKER_HUB_ENDPOINT", hub.address)
        assert resolve(Store(tmp_path / "c"), "mirrored:1").digest == digest
        with pytest.raises(ImageNotFound, match=rf"not found on registry {hub.address}.*the mirror {dead}"
                                                r" failed first: .*unreachable"):
            resolve(Store(tmp_path / "d"), "nosuchimage:1")


# -- the CLI and a container ----------------------------------------------------------------

def test_cli_pull(registry: Registry, tmp_path: Path) -> None:
    name, digest = pushed(registry, tmp_path, {"c": b"cli"})
    proc = subprocess.run([sys.executable, "-m", "pytest_minicontainer", "--store", str(tmp_path / "s"), "pull",
                           f"{registry.address}/{name}"], capture_output=True, text=True, cwd=REPO, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(digest) and "\r" not in proc.stdout  # no progress when not a terminal
    bad = subprocess.run([sys.executable, "-m", "pytest_minicontainer", "--store", str(tmp_path / "s"), "pull",
                          f"{registry.address}/no/such:1"], capture_output=True, text=True, cwd=REPO, timeout=60,
                         check=False)
    assert bad.returncode == 1 and "not found on registry" in bad.stderr


def test_run_a_container_from_a_pulled_image(registry: Registry, tmp_path: Path) -> None:
    from pytest_minicontainer import Engine, RuntimeUnavailable
    from tests.conftest import make_rootfs
    from tests.imagetools import tar_directory

    try:
        Engine.probe()
    except RuntimeUnavailable as exc:
        pytest.skip(f"containers cannot run on this host: {exc.cause}; to enable: {exc.fix}")
    rootfs = make_rootfs(tmp_path / "rootfs")
    import gzip

    layer = gzip.compress(tar_directory(rootfs, tmp_path / "rootfs.tar").read_bytes(), mtime=0)
    layout = tmp_path / "layout"
    digest = write_layout(layout, [layer, gz_layer({"etc/motd": b"pulled from a registry\n"})], ref="t",
                          Cmd=["/bin/sh"])
    push(layout, "t", f"{registry.address}/test/busybox:1")
    with Engine(store=tmp_path / "store") as e:
        image = e.image(f"{registry.address}/test/busybox:1")
        assert image.digest == digest
        with e.run(image) as c:
            assert c.exec(["/bin/sh", "-c", "cat /etc/motd"]).stdout == "pulled from a registry\n"


def test_dropped_download_resumes_with_range(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    payload = os.urandom(400_000)
    name, digest = pushed(registry, tmp_path, {"big": payload})
    blob = gz_layer({"big": payload})
    big = sha256_of(blob)
    dropped = [True]

    def drop_halfway(h: object) -> bool:
        from tests.registry_tools import _Handler

        assert isinstance(h, _Handler)
        if h.command == "GET" and h.path.endswith(big) and dropped:
            dropped.clear()
            h.send_response(200)
            h.send_header("Content-Length", str(len(blob)))
            h.end_headers()
            h.forward_body_prefix(100_000)
            h.close_connection = True
            return True
        return False

    proxy.hooks.append(drop_halfway)
    image = pull_image(store, f"{proxy.address}/{name}", options=FAST)
    assert image.digest == digest and read(image.layer_dirs, "big") == payload
    big_gets = [s for s in proxy.seen if s.path.endswith(big)]
    assert len(big_gets) == 2 and big_gets[1].headers.get("range") == "bytes=100000-"


def test_token_service_refusing_credentials(registry: Registry, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = pushed(registry, tmp_path, {"t": b"t"})
    with Proxy(upstream=registry.address, token=True, token_creds=("alice", "right")) as guard:
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_json(tmp_path / "a.json", guard.address,
                                                                ("alice", "wrong"))))
        with pytest.raises(RegistryError, match=rf"token service http://{guard.address}/token .* refused the"
                                                r" credentials \(HTTP 401\)") as info:
            pull_image(Store(tmp_path / "s"), f"{guard.address}/{name}", options=FAST)
    assert str(tmp_path / "a.json") in str(info.value) and "user 'alice'" in str(info.value)


def sha256_of(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_missing_blob_is_an_image_error(registry: Registry, proxy: Proxy, store: Store, tmp_path: Path) -> None:
    layer = gz_layer({"gone": b"gone"})
    name, _ = pushed(registry, tmp_path, {"gone": b"gone"})
    proxy.hooks.append(lambda h: h.path.endswith(sha256_of(layer)) and (h.reply(404) or True))
    with pytest.raises(ImageError, match=rf"lacks blob {sha256_of(layer)}") as info:
        pull_image(store, f"{proxy.address}/{name}", options=FAST)
    assert not isinstance(info.value, ImageNotFound)
