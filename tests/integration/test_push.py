"""Pushes and the registry build cache, against Debian's docker-registry on 127.0.0.1.

Two stores on one machine stand for two CI machines: the session's ``engine`` pushes, a
second Engine with a store of its own (``elsewhere``) pulls.  What travels is seen through a
loopback proxy that records every request; ``skopeo inspect`` checks what the registry holds.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer import Engine
from pytest_minicontainer.cli import main
from pytest_minicontainer.errors import BuildError, ImageError, RegistryError
from pytest_minicontainer.images.registry import RegistryOptions, push_image
from tests.conftest import count_runs
from tests.registry_tools import Proxy, Registry

FAST = RegistryOptions(retries=2, backoff=0.05, timeout=10)


@pytest.fixture
def elsewhere(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """Another machine: an Engine on a store of its own, emptied at the end."""
    with Engine(store=tmp_path / "elsewhere") as other:
        yield other
        other.prune(all=True)


@pytest.fixture
def proxy(registry: Registry) -> Iterator[Proxy]:
    with Proxy(upstream=registry.address) as p:
        yield p


def name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def base(engine: Engine, busybox_rootfs: Path, registry: Registry) -> str:
    """The busybox rootfs as an image of the registry, pulled into the session's store (as a
    base image of users' is: layers in the store, whose blob digests the store remembers)."""
    ref = f"{registry.address}/base/busybox:{uuid.uuid4().hex[:8]}"
    engine.push(engine.image(f"rootfs:{busybox_rootfs}"), ref)
    engine.image(ref)
    return ref


def seeded(engine: Engine, base: str, script: str) -> Any:
    """A committed image: ``base`` plus what ``script`` wrote."""
    with engine.run(base, command=()) as c:
        result = c.exec(["sh", "-c", script])
        assert result.returncode == 0, result.stderr
        return c.commit()


def uploads(proxy: Proxy) -> list[int]:
    """Body sizes of the blob upload requests (PATCH, and PUT of an upload) the proxy saw."""
    return [s.size for s in proxy.seen if s.method in ("PATCH", "PUT") and "/blobs/uploads/" in s.path]


def skopeo_digest(ref: str, creds: tuple[str, str] | None = None) -> str:
    argv = ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"]
    if creds:
        argv.insert(2, f"--creds={creds[0]}:{creds[1]}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ, "HOME": "/nonexistent"})
    return str(json.loads(out.stdout)["Digest"])


def read(engine: Engine, image: Any, script: str) -> str:
    with engine.run(image, command=()) as c:
        result = c.exec(["sh", "-c", script])
        assert result.returncode == 0, result.stderr
        return result.stdout


# -- push -----------------------------------------------------------------------------------

def test_a_committed_image_pushed_here_is_pulled_elsewhere_with_its_digest_and_content(
        engine: Engine, elsewhere: Engine, base: str, registry: Registry) -> None:
    image = seeded(engine, base, "mkdir -p /data && echo seeded > /data/file && chmod 640 /data/file"
                   " && ln /data/file /data/link && ln -s file /data/sym && rm /bin/vi")
    ref = f"{registry.address}/{name()}/app:v1"
    digest = engine.push(image, ref)
    assert digest.startswith("sha256:") and skopeo_digest(ref) == digest
    pulled = elsewhere.image(ref)
    assert pulled.digest == digest
    assert pulled.config.env_dict == image.config.env_dict
    out = read(elsewhere, pulled, "cat /data/file; stat -c '%a %h' /data/file; readlink /data/sym;"
               " test -e /bin/vi || echo vi-deleted")
    assert out.split("\n")[:4] == ["seeded", "640 2", "file", "vi-deleted"]
    # pushing the pulled image back keeps its manifest: the same digest
    assert elsewhere.push(pulled, f"{registry.address}/{name()}/copy:v1") == digest


def test_owners_travel_with_the_layers(engine: Engine, elsewhere: Engine, base: str,
                                       registry: Registry) -> None:
    if engine.runtime.idmap.max_uid < 1000:
        pytest.skip("one id mapped (no subordinate id range): files cannot belong to uid 1000 here; "
                    "fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER")
    image = seeded(engine, base, "echo private > /secret && chown 1000:1000 /secret && chmod 600 /secret")
    ref = f"{registry.address}/{name()}/owned:v1"
    digest = engine.push(image, ref)
    pulled = elsewhere.image(ref)
    assert pulled.digest == digest
    assert read(elsewhere, pulled, "stat -c '%u:%g %a' /secret; cat /secret") == "1000:1000 600\nprivate\n"


def test_a_second_push_sends_no_layer_and_another_repository_mounts_them(
        engine: Engine, base: str, registry: Registry, proxy: Proxy) -> None:
    image = seeded(engine, base, "head -c 300000 /dev/urandom > /blob")
    repo = name()
    first = engine.push(image, f"{proxy.address}/{repo}/a:1")
    sent = uploads(proxy)
    assert len(sent) == 2 + 1 and max(sent) > 300000  # two layers and the config
    proxy.seen.clear()
    assert engine.push(image, f"{proxy.address}/{repo}/a:1") == first
    assert uploads(proxy) == []
    assert [s.method for s in proxy.seen if "/blobs/" in s.path] == ["HEAD", "HEAD", "HEAD"]
    proxy.seen.clear()
    assert engine.push(image, f"{proxy.address}/{repo}/b:1") == first
    mounts = [s.path for s in proxy.seen if s.method == "POST" and "mount=" in s.path]
    assert any(f"from={repo}%2Fa" in p for p in mounts), proxy.paths()
    assert all(size < 1000 for size in uploads(proxy))  # the config at most; no layer travelled


def test_chunked_upload(engine: Engine, elsewhere: Engine, base: str, registry: Registry,
                        proxy: Proxy) -> None:
    image = seeded(engine, base, "head -c 200000 /dev/urandom > /big")
    ref = f"{proxy.address}/{name()}/chunked:1"
    result = push_image(engine.store, image, ref, options=FAST, chunk_size=64 * 1024)
    patches = [s for s in proxy.seen if s.method == "PATCH"]
    assert len(patches) >= 4 and all(s.size <= 64 * 1024 for s in patches)
    assert all("content-range" in s.headers for s in patches)
    pulled = elsewhere.image(ref.replace(proxy.address, registry.address))
    assert pulled.digest == result.digest
    assert read(elsewhere, pulled, "wc -c < /big").strip() == "200000"


def test_a_reset_connection_restarts_the_blob(engine: Engine, elsewhere: Engine, base: str, registry: Registry,
                                              proxy: Proxy) -> None:
    image = seeded(engine, base, "head -c 150000 /dev/urandom > /reset")
    resets = [True]

    def reset_second_patch(handler: Any) -> bool:
        patches = [s for s in proxy.seen if s.method == "PATCH"]
        if handler.command == "PATCH" and len(patches) == 2 and resets:
            resets.pop()
            handler.close_connection = True  # no answer at all: http.client sees RemoteDisconnected
            return True
        return False

    proxy.hooks.append(reset_second_patch)
    ref = f"{proxy.address}/{name()}/reset:1"
    result = push_image(engine.store, image, ref, options=FAST, chunk_size=64 * 1024)
    assert not resets
    starts = [s for s in proxy.seen if s.method == "POST" and s.path.endswith("/blobs/uploads/")]
    assert len(starts) == result.uploaded + 1 + 1  # each layer, the config, and the broken one again
    pulled = elsewhere.image(ref.replace(proxy.address, registry.address))
    assert pulled.digest == result.digest
    assert read(elsewhere, pulled, "wc -c < /reset").strip() == "150000"


def test_failed_uploads_are_retried_then_reported(engine: Engine, base: str, registry: Registry,
                                                  proxy: Proxy) -> None:
    image = seeded(engine, base, "echo flaky > /flaky")
    failures = {"left": 2}

    def flaky(handler: Any) -> bool:
        if handler.command == "PUT" and "/blobs/uploads/" in handler.path and failures["left"] > 0:
            failures["left"] -= 1
            handler.reply(503, b'{"errors": [{"code": "UNAVAILABLE"}]}')
            return True
        return False

    proxy.hooks.append(flaky)
    ref = f"{proxy.address}/{name()}/flaky:1"
    result = push_image(engine.store, image, ref, options=FAST)
    assert failures["left"] == 0 and skopeo_digest(ref.replace(proxy.address, registry.address)) == result.digest

    proxy.hooks[:] = [lambda h: h.command == "PUT" and "/blobs/uploads/" in h.path and (h.reply(500), True)[1]]
    other = seeded(engine, base, "echo never > /never")
    with pytest.raises(RegistryError, match=rf"registry {proxy.address}.*failed 3 times.*HTTP 500"):
        push_image(engine.store, other, f"{proxy.address}/{name()}/down:1", options=FAST)


def test_push_refusals_name_the_problem(engine: Engine, busybox_rootfs: Path, registry: Registry) -> None:
    with engine.run("host", command=()) as c:
        on_host = c.commit()
    with pytest.raises(ImageError, match=r"built on the `host` image.*FROM a real base image"):
        engine.push(on_host, f"{registry.address}/{name()}/host:1")
    image = engine.image(f"rootfs:{busybox_rootfs}")
    with pytest.raises(ImageError, match="name a tag, not a digest"):
        engine.push(image, f"{registry.address}/x@sha256:{'0' * 64}")
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:1 is unreachable"):
        engine.push(image, "127.0.0.1:1/x:1")


def _auth_file(path: Path, address: str, creds: tuple[str, str]) -> Path:
    path.write_text(json.dumps({"auths": {address: {"auth": base64.b64encode(":".join(creds).encode()).decode()}}}))
    return path


def test_cli_push_and_tag_with_auth(engine: Engine, base: str, auth_registry: Registry, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert auth_registry.credentials is not None
    image = seeded(engine, base, "echo cli > /cli")
    local = f"local/{name()}:1"
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    store = ["--store", str(engine.store.root)]
    assert main([*store, "tag", image.digest, local]) == 0
    assert engine.store.resolve_digest(local) == image.digest
    dest = f"{auth_registry.address}/private/{name()}:1"
    assert main([*store, "push", local, dest]) == 1
    assert "wants a user name and password" in capsys.readouterr().err
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_file(tmp_path / "auth.json", auth_registry.address,
                                                            auth_registry.credentials)))
    assert main([*store, "push", local, dest]) == 0
    out = capsys.readouterr().out
    digest = out.split("digest: ")[1].split()[0]
    assert skopeo_digest(dest, auth_registry.credentials) == digest
    assert main([*store, "tag", "sha256:" + "0" * 64, "x:1"]) == 1
    assert "is not in the store" in capsys.readouterr().err


def test_tag_images_and_remove(engine: Engine, base: str) -> None:
    image = seeded(engine, base, "echo t > /t")
    first, second = f"mine/{name()}:a", f"mine/{name()}:b"
    tagged = engine.tag(image, first)
    assert tagged.digest == image.digest and any(t.endswith(first) for t in tagged.tags)
    engine.tag(first, second)
    listed = {i.digest: i for i in engine.images()}
    assert len([t for t in listed[image.digest].tags if t.endswith((first, second))]) == 2
    engine.remove(first)
    assert engine.images() and all(not t.endswith(first) for i in engine.images() for t in i.tags)
    engine.remove(image)
    assert image.digest not in {i.digest for i in engine.images()}
    with pytest.raises(ImageError, match="not in the store"):
        engine.tag(image, "mine/gone:1")


# -- the registry build cache ----------------------------------------------------------------

CONTAINERFILE = """\
FROM {base}
RUN head -c 16 /dev/urandom | od -An -tx1 > /stamp
COPY data.txt /data.txt
ENV MODE=cached
RUN mkdir /built && cat /stamp /data.txt > /built/both
"""


def _context(tmp_path: Path, base: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "data.txt").write_text("context data\n")
    (ctx / "Containerfile").write_text(CONTAINERFILE.format(base=base))
    return ctx


def test_a_build_elsewhere_takes_every_step_from_the_registry_cache(
        engine: Engine, elsewhere: Engine, base: str, registry: Registry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context(tmp_path, base)
    cache = f"{registry.address}/{name()}/cache:main"
    built = engine.build(context=ctx, cache_to=cache, network="none")
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{cache}"],
                         capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ, "HOME": "/nonexistent"})
    manifest = json.loads(raw.stdout)  # an ordinary OCI artifact: our config, the steps' layers
    assert manifest["config"]["mediaType"] == "application/vnd.minicontainer.buildcache.config.v1+json"
    assert len(manifest["layers"]) == 3

    started = count_runs(elsewhere, monkeypatch)
    lines: list[str] = []
    again = elsewhere.build(context=ctx, cache_from=[cache], network="none", progress=lines.append)
    assert started == []  # no RUN step ran: no container started
    assert again.digest == built.digest
    assert sum("(from the registry cache)" in line for line in lines) == 3
    assert read(elsewhere, again, "cat /built/both") == read(engine, built, "cat /built/both")
    assert again.config.env_dict["MODE"] == "cached"

    # a changed context file: the RUN before it is in this store's cache now, the rest runs
    (ctx / "data.txt").write_text("changed\n")
    lines.clear()
    started.clear()
    changed = elsewhere.build(context=ctx, cache_from=cache, network="none", progress=lines.append)
    assert lines.count("  ---> cached") == 1 and len(started) == 1
    assert read(elsewhere, changed, "cat /built/both").endswith("changed\n")


def test_cache_refs_that_do_not_answer_are_warnings(engine: Engine, busybox_rootfs: Path, registry: Registry,
                                                    tmp_path: Path) -> None:
    ctx = _context(tmp_path, f"rootfs:{busybox_rootfs}")
    lines: list[str] = []
    image = engine.build(context=ctx, cache_from=[f"{registry.address}/{name()}/none:1", "127.0.0.1:1/x:1"],
                         network="none", progress=lines.append)
    assert image.digest
    assert sum("not used" in line for line in lines) == 2, lines
    with pytest.raises(BuildError, match=r"finished \(sha256:.*could not be written to 127\.0\.0\.1:1/x:1"):
        engine.build(context=ctx, cache_to="127.0.0.1:1/x:1", network="none")


def test_caches_of_two_containerfiles_share_one_reference(engine: Engine, elsewhere: Engine, base: str,
                                                          registry: Registry, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = f"{registry.address}/{name()}/cache:shared"
    one = engine.build(f"FROM {base}\nRUN echo one > /one\n", tmp_path, cache_to=cache, network="none")
    two = engine.build(f"FROM {base}\nRUN echo two > /two\n", tmp_path, cache_to=cache, network="none")
    started = count_runs(elsewhere, monkeypatch)
    assert elsewhere.build(f"FROM {base}\nRUN echo one > /one\n", tmp_path, cache_from=cache,
                           network="none").digest == one.digest
    assert elsewhere.build(f"FROM {base}\nRUN echo two > /two\n", tmp_path, cache_from=cache,
                           network="none").digest == two.digest
    assert started == []


def test_cli_build_cache_options(engine: Engine, elsewhere: Engine, base: str, registry: Registry,
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, base)
    cache = f"{registry.address}/{name()}/cache:cli"
    assert main(["--store", str(engine.store.root), "build", "--network", "none",
                 f"--cache-to=type=registry,ref={cache}", str(ctx)]) == 0
    assert main(["--store", str(elsewhere.store.root), "build", "--network", "none", "--cache-from", cache,
                 str(ctx)]) == 0
    err = capsys.readouterr().err
    assert err.count("(from the registry cache)") == 3, err
