"""resolve(): OCI layouts, archives, rootfs, store names; bad input; reuse speed; concurrency."""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer.errors import ImageError, ImageNotFound, MiniContainerError
from pytest_minicontainer.images import resolve
from pytest_minicontainer.images._platform import host_platform
from pytest_minicontainer.images._view import ImageView
from pytest_minicontainer.store import Store
from tests.imagetools import (
    TarBuilder,
    merge_layers,
    sha256,
    tar_directory,
    write_docker_archive,
    write_manifest,
    write_oci_layout,
)

REPO = Path(__file__).resolve().parents[2]


def base_layers() -> list[bytes]:
    return [
        TarBuilder().dir("etc").file("etc/os-release", b"ID=test\n").file("etc/gone", b"x")
        .dir("var/cache").file("var/cache/a", b"a").file("bin/tool", b"#!", 0o4755).bytes("gzip"),
        TarBuilder().whiteout("etc/gone").opaque("var/cache").file("var/cache/b", b"b")
        .symlink("bin/link", "/bin/tool").file("bin/new", b"new", 0o2755).hardlink("bin/tool2", "bin/new")
        .bytes(),
    ]


EXPECTED = {
    "etc": "dir", "etc/os-release": "file", "var": "dir", "var/cache": "dir", "var/cache/b": "file",
    "bin": "dir", "bin/tool": "file", "bin/link": "symlink", "bin/tool2": "file", "bin/new": "file",
}


def kinds(image_dirs: tuple[str, ...]) -> dict[str, str]:
    return {k: v[0] for k, v in merge_layers(image_dirs).items()}


def assert_store_usable(store: Store, tmp_path: Path) -> None:
    """After a failure: no tmp leftovers, no half layers, and a good image still imports."""
    assert list((store.root / "tmp").iterdir()) == []
    store.gc()  # good layers of a failed import are unreferenced until an image uses them
    assert list((store.root / "layers").iterdir()) == [
        Path(d) for i in store.list_images() for d in i.layer_dirs if d.startswith(str(store.root))]
    good = write_oci_layout(tmp_path / "good", [TarBuilder().file("ok", b"ok").bytes()])
    assert (Path(resolve(store, f"oci:{good.path}").layer_dirs[0]) / "ok").read_bytes() == b"ok"


def test_oci_layout_image(store: Store, tmp_path: Path) -> None:
    img = write_oci_layout(tmp_path / "lay", base_layers(), ref="v1", Entrypoint=["/bin/tool"],
                           Cmd=["-x"], Env=["PATH=/bin", "A=b=c"], WorkingDir="/etc", User="1:2",
                           ExposedPorts={"80/tcp": {}}, Labels={"k": "v"})
    image = resolve(store, f"oci:{img.path}:v1")
    assert image.digest == img.manifest_digest
    assert image.reference == f"oci:{img.path}:v1"
    assert image.config.default_command() == ["/bin/tool", "-x"]
    assert image.config.env_dict == {"PATH": "/bin", "A": "b=c"}
    assert (image.config.workdir, image.config.user) == ("/etc", "1:2")
    assert image.config.exposed_ports == ("80/tcp",)
    assert image.layers == tuple(json.loads(img.blob(img.config_digest).read_bytes())["rootfs"]["diff_ids"])
    assert all(d.startswith(str(store.root)) for d in image.layer_dirs)
    assert kinds(image.layer_dirs) == EXPECTED
    # with a single image the REF may be left out
    assert resolve(store, f"oci:{img.path}").digest == image.digest
    # the manifest and config are kept in the store
    assert store.blob_path(img.manifest_digest).exists() and store.blob_path(img.config_digest).exists()


def test_second_resolve_is_fast_and_rehashes_nothing(store: Store, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    big = TarBuilder().file("big", os.urandom(4 << 20)).bytes("gzip")
    img = write_oci_layout(tmp_path / "lay", [big, *base_layers()])
    first = resolve(store, f"oci:{img.path}:latest")
    import pytest_minicontainer.images._import as importer

    monkeypatch.setattr(importer, "unpack_layer", lambda *a, **k: pytest.fail("unpacked again"))
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        again = resolve(store, f"oci:{img.path}:latest")
        timings.append(time.perf_counter() - start)
    assert again == first
    assert min(timings) < 0.020, timings
    # a new Store object (a new session) reuses it as well
    assert resolve(Store(store.root), f"oci:{img.path}:latest").layer_dirs == first.layer_dirs


def test_shared_layers_are_stored_once(store: Store, tmp_path: Path) -> None:
    layers = base_layers()
    a = resolve(store, f"oci:{write_oci_layout(tmp_path / 'a', layers[:1]).path}")
    more = write_oci_layout(tmp_path / "b", [*layers, TarBuilder().file("x").bytes()])
    b = resolve(store, f"oci:{more.path}")
    assert b.layer_dirs[0] == a.layer_dirs[0]
    assert len(list((store.root / "layers").iterdir())) == 3


def test_oci_archive(store: Store, tmp_path: Path) -> None:
    img = write_oci_layout(tmp_path / "lay", base_layers(), ref="v2")
    archive = tar_directory(img.path, tmp_path / "img.tar")
    image = resolve(store, f"oci-archive:{archive}:v2")
    assert image.digest == img.manifest_digest
    assert kinds(image.layer_dirs) == EXPECTED


def test_zstd_layers(store: Store, tmp_path: Path) -> None:
    img = write_oci_layout(tmp_path / "lay", [TarBuilder().file("z", b"zstd!").bytes("zstd")])
    image = resolve(store, f"oci:{img.path}")
    assert (Path(image.layer_dirs[0]) / "z").read_bytes() == b"zstd!"


def test_zstd_without_extra(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = write_oci_layout(tmp_path / "lay", [TarBuilder().file("z", b"zstd!").bytes("zstd")])
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ImageError, match=r"blobs/sha256/.*pytest-minicontainer\[zstd\]"):
        resolve(store, f"oci:{img.path}")
    assert_store_usable(store, tmp_path)


@pytest.mark.parametrize("with_oci_layout", [False, True], ids=["legacy", "docker25"])
def test_docker_archive(store: Store, tmp_path: Path, with_oci_layout: bool) -> None:
    layers = [gzip.decompress(base_layers()[0]), base_layers()[1]]  # docker save writes plain tars
    archive = tmp_path / "saved.tar"
    config_digest = write_docker_archive(archive, layers, ["example.com/app:1", "app:latest"],
                                         with_oci_layout=with_oci_layout, Cmd=["run"])
    image = resolve(store, f"docker-archive:{archive}:app:latest")
    if with_oci_layout:
        index = json.loads((tmp_path / "saved.d/index.json").read_text())
        assert image.digest == index["manifests"][0]["digest"]  # the embedded manifest's digest
    else:
        assert image.digest == config_digest  # legacy archives have no manifest: Docker's image id
    assert image.config.cmd == ("run",)
    assert kinds(image.layer_dirs) == EXPECTED
    assert image.tags == ("app:latest", "example.com/app:1")  # docker load tags
    assert resolve(store, "app").digest == image.digest
    assert resolve(store, f"docker-archive:{archive}").digest == image.digest
    with pytest.raises(ImageNotFound, match=r"no image tagged 'other:1'.*app:latest"):
        resolve(store, f"docker-archive:{archive}:other:1")


def test_multi_platform_index_picks_host_and_skips_attestations(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "lay"
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    _, host_arch, host_variant = host_platform()
    other = "s390x" if host_arch != "s390x" else "amd64"
    descs: list[dict[str, Any]] = []
    for arch, content in ((other, b"other"), ("unknown", b"attestation"), (host_arch, b"host")):
        digest, data, _, _ = write_manifest(root, [TarBuilder().file("which", content).bytes()])
        platform = {"os": "unknown" if arch == "unknown" else "linux", "architecture": arch}
        if arch == host_arch and host_variant:
            platform["variant"] = host_variant
        descs.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                      "size": len(data), "platform": platform})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": descs}).encode()
    (root / "blobs/sha256" / sha256(index)[7:]).write_bytes(index)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(index),
        "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    image = resolve(store, f"oci:{root}:multi")
    assert (Path(image.layer_dirs[0]) / "which").read_bytes() == b"host"
    assert image.digest == descs[2]["digest"]


def test_no_platform_for_this_host(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "lay"
    img = write_oci_layout(root, [TarBuilder().file("a").bytes()], ref=None)
    index = json.loads((root / "index.json").read_text())
    index["manifests"][0]["platform"] = {"os": "windows", "architecture": "amd64"}
    index["manifests"].append({**index["manifests"][0], "platform": {"os": "linux", "architecture": "mips"}})
    (root / "index.json").write_text(json.dumps(index))
    with pytest.raises(ImageError, match=r"no manifest for this host's platform.*linux/mips.*windows/amd64"):
        resolve(store, f"oci:{img.path}")


def test_rootfs_directory_is_used_in_place(store: Store, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    image = resolve(store, f"rootfs:{rootfs}")
    assert image.layer_dirs == (str(rootfs),)
    assert image.digest == sha256(("rootfs-dir:" + str(rootfs)).encode())
    assert list((store.root / "layers").iterdir()) == []


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
def test_rootfs_tarball_unpacked_once(store: Store, tmp_path: Path, compression: str) -> None:
    blob = TarBuilder().file("etc/hostname", b"rootfs\n").bytes(compression)
    tarball = tmp_path / f"rootfs.tar.{compression}"
    tarball.write_bytes(blob)
    image = resolve(store, f"rootfs:{tarball}")
    assert image.digest == sha256(blob)
    assert (Path(image.layer_dirs[0]) / "etc/hostname").read_bytes() == b"rootfs\n"
    copy = tmp_path / "copy.tar"
    shutil.copy(tarball, copy)  # same content elsewhere: same image, no second layer
    assert resolve(store, f"rootfs:{copy}").layer_dirs == image.layer_dirs
    assert len(list((store.root / "layers").iterdir())) == 1


def test_store_names_and_digests(store: Store, tmp_path: Path) -> None:
    archive = tmp_path / "s.tar"
    write_docker_archive(archive, [TarBuilder().file("a").bytes()], ["mine:1"])
    image = resolve(store, f"docker-archive:{archive}")
    assert resolve(store, "mine:1").digest == image.digest
    assert resolve(store, image.digest).digest == image.digest
    with pytest.raises(ImageNotFound, match=r"'mine:2' is not in the store.*registry pulls.*oci:PATH"):
        resolve(store, "mine:2", pull="never")


@pytest.mark.parametrize("reference", ["ftp:thing", "Not A Name", "oci:", "http://x/y"])
def test_unknown_reference_forms(store: Store, reference: str) -> None:
    with pytest.raises(ImageError, match=r"accepted image references: oci:PATH\[:REF\]") as info:
        resolve(store, reference, pull="never")
    assert repr(reference.strip()) in str(info.value) or reference in str(info.value)
    assert isinstance(info.value, MiniContainerError)


def test_missing_files(store: Store, tmp_path: Path) -> None:
    for ref in (f"oci:{tmp_path}/nope", f"oci-archive:{tmp_path}/nope.tar",
                f"docker-archive:{tmp_path}/x.tar",
                f"rootfs:{tmp_path}/none"):
        with pytest.raises(ImageNotFound, match="does not exist"):
            resolve(store, ref)


# -- bad input: each an ImageError naming the file and the problem; store still usable ------


def test_unknown_ref_in_layout(store: Store, tmp_path: Path) -> None:
    img = write_oci_layout(tmp_path / "lay", base_layers(), ref="v1")
    with pytest.raises(ImageNotFound, match=r"lay: no image named 'v9'.*'v1'"):
        resolve(store, f"oci:{img.path}:v9")
    assert_store_usable(store, tmp_path)


def test_several_images_need_a_ref(store: Store, tmp_path: Path) -> None:
    write_oci_layout(tmp_path / "lay", base_layers(), ref="a")
    write_oci_layout(tmp_path / "lay", [TarBuilder().file("b").bytes()], ref="b")
    with pytest.raises(ImageError, match=r"holds 2 images; name one with :REF.*'a', 'b'"):
        resolve(store, f"oci:{tmp_path / 'lay'}")
    assert resolve(store, f"oci:{tmp_path / 'lay'}:b").layer_dirs


def test_layer_blob_digest_mismatch(store: Store, tmp_path: Path) -> None:
    img = write_oci_layout(tmp_path / "lay", base_layers())
    bad = img.blob(img.layer_digests[1])
    bad.write_bytes(TarBuilder().file("evil", b"swapped").bytes())
    blob = img.layer_digests[1][7:]
    with pytest.raises(ImageError, match=rf"lay:blobs/sha256/{blob}: blob does not match"):
        resolve(store, f"oci:{img.path}")
    assert_store_usable(store, tmp_path)


def test_manifest_digest_mismatch(store: Store, tmp_path: Path) -> None:
    img = write_oci_layout(tmp_path / "lay", base_layers())
    path = img.blob(img.manifest_digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    with pytest.raises(ImageError, match=r"lay: manifest blob .* does not match its digest"):
        resolve(store, f"oci:{img.path}")
    assert_store_usable(store, tmp_path)


def test_manifest_names_a_missing_blob(store: Store, tmp_path: Path) -> None:
    img = write_oci_layout(tmp_path / "lay", base_layers())
    img.blob(img.layer_digests[0]).unlink()
    missing = img.layer_digests[0]
    with pytest.raises(ImageError, match=rf"lay: manifest .* names blob {missing}, which is missing"):
        resolve(store, f"oci:{img.path}")
    img.blob(img.config_digest).unlink()
    with pytest.raises(ImageError, match=r"config of manifest .* names blob .* which is missing"):
        resolve(store, f"oci:{img.path}")
    assert_store_usable(store, tmp_path)


def test_diff_id_mismatch(store: Store, tmp_path: Path) -> None:
    layer = TarBuilder().file("a").bytes()
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [sha256(b"something else")]}}
    img = write_oci_layout(tmp_path / "lay", [layer], config=config)
    with pytest.raises(ImageError, match=r"does not match its diff id"):
        resolve(store, f"oci:{img.path}")
    assert_store_usable(store, tmp_path)


def test_corrupt_gzip_layer(store: Store, tmp_path: Path) -> None:
    blob = bytearray(TarBuilder().file("a", os.urandom(20000)).bytes("gzip"))
    blob[100:140] = b"\0" * 40
    img = write_oci_layout(tmp_path / "lay", [bytes(blob)])
    with pytest.raises(ImageError, match=r"lay:blobs/sha256/\w+: corrupt gzip stream"):
        resolve(store, f"oci:{img.path}")
    assert_store_usable(store, tmp_path)


def test_truncated_layer(store: Store, tmp_path: Path) -> None:
    blob = TarBuilder().file("a", b"x" * 5000).file("b", b"y").bytes()
    img = write_oci_layout(tmp_path / "lay", [blob[:3000]])
    with pytest.raises(ImageError, match=r"lay:blobs/sha256/\w+: layer member 'a': truncated tar"):
        resolve(store, f"oci:{img.path}")
    assert_store_usable(store, tmp_path)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-abs", "symlink-rel", "hardlink", "loop"])
def test_hostile_layers_through_resolve(store: Store, tmp_path: Path, case: str) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    builders = {
        "dotdot": TarBuilder().file("../../../sentinel/evil", b"x"),
        "absolute": TarBuilder().file(f"{sentinel}/evil", b"x"),
        "symlink-abs": TarBuilder().symlink("s", str(sentinel)).file("s/evil", b"x"),
        "symlink-rel": TarBuilder().symlink("s", "../../../sentinel").file("s/evil", b"x"),
        "hardlink": TarBuilder().hardlink("evil", "../../../sentinel/x"),
        "loop": TarBuilder().symlink("a", "b").symlink("b", "a").file("a/evil", b"x"),
    }
    img = write_oci_layout(tmp_path / "lay", [builders[case].bytes("gzip")])
    with pytest.raises(ImageError, match=r"lay:blobs/sha256/\w+: layer member '.*evil'") :
        resolve(store, f"oci:{img.path}")
    assert list(sentinel.iterdir()) == []
    assert_store_usable(store, tmp_path)


def test_not_a_layout_or_archive(store: Store, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match=r"empty: not an OCI image layout \(index.json is missing\)"):
        resolve(store, f"oci:{tmp_path / 'empty'}")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageError, match=r"junk.tar: not a readable tar archive"):
        resolve(store, f"oci-archive:{junk}")
    with tarfile.open(tmp_path / "other.tar", "w") as t:
        t.add(tmp_path / "empty", arcname="x")
    with pytest.raises(ImageError, match=r"other.tar: not a docker-archive \(manifest.json is missing\)"):
        resolve(store, f"docker-archive:{tmp_path / 'other.tar'}")


# -- processes sharing a store ----------------------------------------------------------------


def test_concurrent_imports_unpack_each_layer_once(store: Store, tmp_path: Path) -> None:
    layers = [TarBuilder().file(f"f{i}", os.urandom(1 << 20)).bytes("gzip") for i in range(3)]
    img = write_oci_layout(tmp_path / "lay", layers)
    log = tmp_path / "unpacks.log"
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import pytest_minicontainer.images._import as importer
        from pytest_minicontainer.images import resolve
        from pytest_minicontainer.store import Store
        real = importer.unpack_layer
        def logged(blob, dest, **kw):
            with open({str(log)!r}, "a") as f:
                f.write(kw["source"] + "\\n")
            return real(blob, dest, **kw)
        importer.unpack_layer = logged
        print(resolve(Store({str(store.root)!r}), {f"oci:{img.path}"!r}).layer_dirs)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        outputs.append(out)
    assert len(set(outputs)) == 1
    assert len(log.read_text().splitlines()) == 3
    assert list((store.root / "tmp").iterdir()) == []


def test_a_layer_writes_through_a_lower_layers_symlinked_directory(store: Store, tmp_path: Path) -> None:
    """As Docker applies layers: ``bin/tool`` lands in ``usr/bin`` when a parent made ``bin -> usr/bin``."""
    base = (TarBuilder().dir("usr").dir("usr/bin").file("usr/bin/old", b"old").symlink("bin", "usr/bin")
            .dir("etc").symlink("etc/alt", "/usr/bin").bytes())
    top = (TarBuilder().file("bin/tool", b"tool").file("etc/alt/other", b"other")
           .hardlink("bin/tool2", "bin/tool").whiteout("bin/old").bytes())
    image = resolve(store, f"oci:{write_oci_layout(tmp_path / 'img', [base, top]).path}")
    tree = merge_layers(image.layer_dirs)
    assert tree["bin"][0] == "symlink"  # still the link, not a directory hiding it
    assert tree["usr/bin/tool"][:1] == ("file",) and "usr/bin/other" in tree and "usr/bin/tool2" in tree
    assert "usr/bin/old" not in tree
    assert not (Path(image.layer_dirs[1]) / "bin").exists()
    # the same diff on a parent without the link is stored apart (layers are keyed by chain id)
    plain = TarBuilder().dir("bin").dir("etc").dir("etc/alt").dir("usr").bytes()
    other = resolve(store, f"oci:{write_oci_layout(tmp_path / 'other', [plain, top]).path}")
    assert other.layer_dirs[1] != image.layer_dirs[1]
    assert merge_layers(other.layer_dirs)["bin"][0] == "dir"
    assert "bin/tool" in merge_layers(other.layer_dirs)
    # a directory entry for the link itself replaces it, as Docker's applier does
    replaced = resolve(store, f"oci:{write_oci_layout(tmp_path / 'r', [base, TarBuilder().dir('bin').bytes()]).path}")
    assert merge_layers(replaced.layer_dirs)["bin"][0] == "dir"


def test_a_hard_link_to_a_parents_file_copies_it_up(store: Store, tmp_path: Path) -> None:
    base = TarBuilder().dir("usr").file("usr/lib.so", b"library", mode=0o755).bytes()
    top = TarBuilder().hardlink("usr/lib.so.1", "usr/lib.so").bytes()
    image = resolve(store, f"oci:{write_oci_layout(tmp_path / 'img', [base, top]).path}")
    upper = Path(image.layer_dirs[1]) / "usr"
    assert (upper / "lib.so").read_bytes() == (upper / "lib.so.1").read_bytes() == b"library"
    assert (upper / "lib.so").stat().st_ino == (upper / "lib.so.1").stat().st_ino
    assert (upper / "lib.so").stat().st_mode & 0o777 == 0o755
    assert (Path(image.layer_dirs[0]) / "usr" / "lib.so").read_bytes() == b"library"  # the parent is untouched
    outside = TarBuilder().hardlink("x", "../../etc/passwd").bytes()
    with pytest.raises(ImageError, match="x"):
        resolve(store, f"oci:{write_oci_layout(tmp_path / 'bad', [base, outside]).path}")


def test_a_lower_layers_symlink_is_never_followed_on_the_host(store: Store, tmp_path: Path) -> None:
    """A directory of an upper layer hides a lower layer's symlink of the same name: looking
    below it (a hard link's copy-up, COPY --from) must not read the host through that link."""
    secret = tmp_path / "host-dir"
    secret.mkdir()
    (secret / "secret.txt").write_text("TOPSECRET")
    layers = [TarBuilder().symlink("x", str(secret)).symlink("y", "../../../../../../" + str(secret)).bytes(),
              TarBuilder().dir("x").dir("y").bytes()]
    for name in ("x", "y"):
        steal = [*layers, TarBuilder().hardlink("stolen", f"{name}/secret.txt").bytes()]
        with pytest.raises(ImageError, match=f"'stolen'.*hard link to '{name}/secret.txt'.*not in the image"):
            resolve(store, f"oci:{write_oci_layout(tmp_path / ('img' + name), steal).path}")
    assert_store_usable(store, tmp_path)
    view = ImageView(resolve(store, f"oci:{write_oci_layout(tmp_path / 'two', layers).path}"))
    for name in ("x", "y"):
        assert view.entry(f"{name}/secret.txt") is None
        assert view.listdir(name) == []
    assert not any("TOPSECRET" in p.read_text(errors="replace")
                   for p in (store.root / "layers").rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("delete", ["whiteout", "opaque"])
def test_a_hard_link_cannot_bring_back_a_file_its_layer_deleted(store: Store, tmp_path: Path, delete: str) -> None:
    base = TarBuilder().dir("d").file("d/secret", b"deleted").bytes()
    top = TarBuilder().whiteout("d") if delete == "whiteout" else TarBuilder().opaque("d")
    layers = [base, top.hardlink("h", "d/secret").bytes()]
    with pytest.raises(ImageError, match=r"'h'.*hard link to 'd/secret'.*not in the image"):
        resolve(store, f"oci:{write_oci_layout(tmp_path / 'img', layers).path}")
    assert_store_usable(store, tmp_path)


@pytest.mark.parametrize("marker_first", [True, False])
def test_an_opaque_mark_on_the_layer_root_hides_every_lower_entry(store: Store, tmp_path: Path,
                                                                  marker_first: bool) -> None:
    """overlayfs ignores an opaque mark on a layer's root: the lower names get whiteouts instead
    (tests/integration/test_oci_images.py checks what a container sees)."""
    base = TarBuilder().file("a", b"a").dir("keep").file("keep/old", b"o").symlink("s", "a").bytes()
    top = TarBuilder()
    if marker_first:
        top.opaque("")
    top.dir("keep").file("keep/new", b"n").file("b", b"b")
    if not marker_first:
        top.opaque("")
    image = resolve(store, f"oci:{write_oci_layout(tmp_path / 'img', [base, top.bytes()]).path}")
    assert sorted(merge_layers(image.layer_dirs)) == ["b", "keep", "keep/new"]
    view = ImageView(image)
    assert view.listdir("") == ["b", "keep"] and view.listdir("keep") == ["new"]


@pytest.mark.parametrize("mode", [0o555, 0o500])
def test_a_layer_root_without_write_permission(store: Store, tmp_path: Path, mode: int) -> None:
    """Publishing a layer moves its directory, which needs write permission on it when not root."""
    layer = TarBuilder().dir(".", mode=mode).dir("usr").file("usr/f", b"x").bytes()
    image = resolve(store, f"oci:{write_oci_layout(tmp_path / 'img', [layer]).path}")
    assert stat.S_IMODE(os.stat(image.layer_dirs[0]).st_mode) == mode
    assert (Path(image.layer_dirs[0]) / "usr" / "f").read_bytes() == b"x"
    assert list((store.root / "tmp").iterdir()) == []


def test_the_view_agrees_with_overlayfs_below_opaque_and_deleted_parents(store: Store, tmp_path: Path) -> None:
    base = (TarBuilder().dir("a/b").file("a/b/x", b"x").dir("c/d").file("c/d/x", b"x")
            .dir("e").file("e/x", b"x").bytes())
    top = (TarBuilder().opaque("a").dir("a/b").file("a/b/y", b"y").whiteout("c").dir("c").file("c/y", b"y")
           .file("e/y", b"y").bytes())
    image = resolve(store, f"oci:{write_oci_layout(tmp_path / 'img', [base, top]).path}")
    view, merged = ImageView(image), merge_layers(image.layer_dirs)
    for d in ("", "a", "a/b", "c", "e"):
        assert view.listdir(d) == sorted(k.rsplit("/", 1)[-1] for k in merged if posixpath.dirname(k) == d), d
    assert view.entry("a/b/x") is None and view.entry("c/d/x") is None and view.entry("e/x") is not None
