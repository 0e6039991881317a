"""Image metadata that is valid JSON of the wrong shape: an ImageError naming the field.

A layout or archive can come from anywhere, so a ``"rootfs": "x"`` or ``"Env": 5`` must be
reported as an :class:`ImageError` that says which file and field to fix, never escape as an
AttributeError/TypeError/ValueError from deep inside the import, and never half-import: the
shapes are checked before any layer is unpacked, and the store keeps working afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minicontainer.engine import Engine
from pytest_minicontainer.errors import ImageError, ImageNotFound
from pytest_minicontainer.image import ImageConfig
from tests.imagetools import TarBuilder, image_config, layer_diff_id, sha256, tar_directory, write_oci_layout

LAYER = TarBuilder().file("hello", b"hello").bytes()

Make = Callable[[Path], str]  # writes an image under the tmp dir, returns the reference to load


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(tmp_path / "store") as eng:
        yield eng


def good_config(**fields: Any) -> dict[str, Any]:
    """A valid one-layer image config with ``fields`` replaced."""
    return {**image_config([layer_diff_id(LAYER)]), **fields}


def oci(tmp_path: Path, config: dict[str, Any] | None = None) -> str:
    image = write_oci_layout(tmp_path / "layout", [LAYER], config=config)
    return f"oci:{image.path}:latest"


def docker_archive(tmp_path: Path, config: dict[str, Any] | None = None, ref: str = "",
                   **entry: Any) -> str:
    """A legacy ``docker save`` archive of one image; ``entry`` replaces manifest.json fields."""
    work = tmp_path / "archive.d"
    work.mkdir()
    cbytes = json.dumps(config or good_config()).encode()
    config_rel = f"{sha256(cbytes)[7:]}.json"
    (work / config_rel).write_bytes(cbytes)
    (work / "layer").mkdir()
    (work / "layer/layer.tar").write_bytes(LAYER)
    manifest = {"Config": config_rel, "RepoTags": ["app:1"], "Layers": ["layer/layer.tar"], **entry}
    (work / "manifest.json").write_text(json.dumps([manifest]))
    archive = tar_directory(work, tmp_path / "archive.tar")
    return f"docker-archive:{archive}{ref}"


def oci_manifest(**fields: Any) -> Make:
    """An OCI layout whose image manifest has ``fields`` replaced (re-hashed, so the digest holds)."""
    def make(tmp_path: Path) -> str:
        image = write_oci_layout(tmp_path / "layout", [LAYER])
        manifest = {**json.loads(image.blob(image.manifest_digest).read_bytes()), **fields}
        data = json.dumps(manifest).encode()
        digest = sha256(data)
        (image.path / "blobs/sha256" / digest[7:]).write_bytes(data)
        index = json.loads((image.path / "index.json").read_text())
        index["manifests"][0].update(digest=digest, size=len(data))
        (image.path / "index.json").write_text(json.dumps(index))
        return f"oci:{image.path}:latest"
    return make


def oci_index(entries: Callable[[dict[str, Any]], Any], ref: str = "") -> Make:
    """An OCI layout whose index.json's ``manifests`` is ``entries(the good entry)``."""
    def make(tmp_path: Path) -> str:
        image = write_oci_layout(tmp_path / "layout", [LAYER])
        index = json.loads((image.path / "index.json").read_text())
        index["manifests"] = entries(index["manifests"][0])
        (image.path / "index.json").write_text(json.dumps(index))
        return f"oci:{image.path}{ref}"
    return make


HOST = {"os": "linux", "architecture": "amd64"}

# (config fields replaced, what the message must say): read from both formats
BAD_CONFIGS = {
    "rootfs-string": ({"rootfs": "x"}, r"rootfs must be a JSON object, got 'x'"),
    "diff_ids-number": ({"rootfs": {"type": "layers", "diff_ids": 5}},
                        r"rootfs\.diff_ids must be a JSON array of strings, got 5"),
    "config-string": ({"config": "hello"}, r": config must be a JSON object, got 'hello'"),
    "config-list": ({"config": ["Env", "A=1"]}, r": config must be a JSON object, got \['Env', 'A=1'\]"),
    "Env-number": ({"config": {"Env": 5}}, r"config\.Env must be a JSON array of strings, got 5"),
    "Env-not-strings": ({"config": {"Env": ["A=1", 2]}}, r"config\.Env must be a JSON array of strings"),
    "Cmd-number": ({"config": {"Cmd": 5}}, r"config\.Cmd must be a JSON array of strings, got 5"),
    "Cmd-bad-quotes": ({"config": {"Cmd": "echo 'unterminated"}}, r"config\.Cmd must be valid shell words"),
    "Entrypoint-object": ({"config": {"Entrypoint": {"a": 1}}}, r"config\.Entrypoint must be a JSON array"),
    "Labels-list": ({"config": {"Labels": ["a=b"]}}, r"config\.Labels must be a JSON object, got \['a=b'\]"),
    "Labels-values": ({"config": {"Labels": {"a": 1}}}, r"config\.Labels must be a JSON object of strings"),
    "ExposedPorts-list": ({"config": {"ExposedPorts": ["80/tcp"]}},
                          r"config\.ExposedPorts must be a JSON object, got \['80/tcp'\]"),
    "Healthcheck-string": ({"config": {"Healthcheck": "CMD true"}}, r"config\.Healthcheck must be a JSON object"),
    "Healthcheck-Interval": ({"config": {"Healthcheck": {"Test": ["CMD", "true"], "Interval": "1s"}}},
                             r"config\.Healthcheck\.Interval must be a number .*, got '1s'"),
    "Healthcheck-Test": ({"config": {"Healthcheck": {"Test": "CMD true"}}},
                         r"config\.Healthcheck\.Test must be a JSON array of strings"),
    "WorkingDir-list": ({"config": {"WorkingDir": ["/"]}}, r"config\.WorkingDir must be a string"),
}

CASES: dict[str, tuple[Make, str]] = {
    **{f"oci-{name}": ((lambda c: lambda t: oci(t, good_config(**c)))(cfg), msg)
       for name, (cfg, msg) in BAD_CONFIGS.items()},
    **{f"docker-archive-{name}": ((lambda c: lambda t: docker_archive(t, good_config(**c)))(cfg), msg)
       for name, (cfg, msg) in BAD_CONFIGS.items()},
    "oci-manifest-config-string": (oci_manifest(config="abc"), r"manifest sha256:\w+: config must be a JSON object"),
    "oci-manifest-mediaType-list": (oci_manifest(mediaType=["x"]), r"mediaType must be a string, got \['x'\]"),
    "oci-manifest-layers-number": (oci_manifest(layers=5), r"layers must be a JSON array of objects, got 5"),
    "oci-manifest-config-digest": (oci_manifest(config={"digest": 5}), r"config\.digest must be a string, got 5"),
    "oci-index-annotations-string": (oci_index(lambda e: [{**e, "annotations": "x"}]),
                                     r"index\.json entry .*: annotations must be a JSON object, got 'x'"),
    "oci-index-manifests-string": (oci_index(lambda e: "x", ref=":latest"),
                                   r"index\.json: manifests must be a JSON array, got 'x'"),
    "oci-index-platform-string": (oci_index(lambda e: [{**e, "platform": "linux"}, {**e, "platform": HOST}]),
                                  r"index\.json entry .*: platform must be a JSON object, got 'linux'"),
    "oci-index-platform-os-number": (oci_index(lambda e: [{**e, "platform": {"os": 5}}, {**e, "platform": HOST}]),
                                     r"platform\.os must be a string, got 5"),
    "docker-archive-RepoTags-string": (lambda t: docker_archive(t, RepoTags="foo:1"),
                                       r"manifest\.json\[0\]: RepoTags must be a JSON array of strings, got 'foo:1'"),
    "docker-archive-Layers-number": (lambda t: docker_archive(t, Layers=5),
                                     r"manifest\.json\[0\]: Layers must be a JSON array of strings, got 5"),
    "docker-archive-Config-list": (lambda t: docker_archive(t, Config=["x.json"]),
                                   r"manifest\.json\[0\]: Config must be a string"),
    "docker-archive-ref-upper-case": (lambda t: docker_archive(t, ref=":UPPER:tag"),
                                      r"'docker-archive:.*archive\.tar:UPPER:tag': 'UPPER:tag' is not a valid"
                                      r" REPO:TAG \(write docker-archive:FILE\[:REPO:TAG\]"),
}


def assert_store_usable(engine: Engine, tmp_path: Path) -> None:
    """Nothing of the failed import is left behind, and a good image still loads."""
    store = engine.store
    assert list((store.root / "tmp").iterdir()) == []
    assert list((store.root / "layers").iterdir()) == []  # shapes are checked before any layer is unpacked
    assert store.list_images() == []
    good = write_oci_layout(tmp_path / "good", [TarBuilder().file("ok", b"ok").bytes()])
    assert (Path(engine.image(f"oci:{good.path}").layer_dirs[0]) / "ok").read_bytes() == b"ok"


@pytest.mark.parametrize(("make", "message"), list(CASES.values()), ids=list(CASES))
def test_wrong_shape_is_an_image_error_naming_the_field(engine: Engine, tmp_path: Path, make: Make,
                                                        message: str) -> None:
    reference = make(tmp_path)
    with pytest.raises(ImageError, match=message) as info:
        engine.image(reference)
    assert type(info.value) is ImageError  # malformed, not "not found"
    assert_store_usable(engine, tmp_path)


@pytest.mark.parametrize("fmt", ["oci", "docker-archive"])
def test_the_message_names_the_file(engine: Engine, tmp_path: Path, fmt: str) -> None:
    config = good_config(config={"Env": 5})
    reference = oci(tmp_path, config) if fmt == "oci" else docker_archive(tmp_path, config)
    with pytest.raises(ImageError) as info:
        engine.image(reference)
    path = str(tmp_path / ("layout" if fmt == "oci" else "archive.tar"))
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: config ")


def test_repo_tags_string_never_makes_tags(engine: Engine, tmp_path: Path) -> None:
    """``"RepoTags": "foo:1"`` once tagged the image f:latest, o:latest, 1:latest (its characters)."""
    with pytest.raises(ImageError, match="RepoTags"):
        engine.image(docker_archive(tmp_path, RepoTags="foo:1"))
    for junk in ("f", "o", "1", "foo:1"):
        with pytest.raises(ImageNotFound):
            engine.store.load_image(junk)


def test_invalid_repo_tags_are_ignored(engine: Engine, tmp_path: Path) -> None:
    """``docker save`` never writes one; a hand-made "Bad Tag!" is skipped, the valid tags still work."""
    image = engine.image(docker_archive(tmp_path, RepoTags=["Bad Tag!", "app:1"], ref=":app:1"))
    assert image.tags == ("app:1",)
    assert engine.store.load_image("app:1").digest == image.digest


def test_only_invalid_repo_tags(engine: Engine, tmp_path: Path) -> None:
    reference = docker_archive(tmp_path, RepoTags=["Bad Tag!"])
    with pytest.raises(ImageNotFound, match=r"no image tagged 'app:1'.*Bad Tag!"):
        engine.image(reference + ":app:1")
    image = engine.image(reference)  # the only image, untagged: the invalid tag is dropped
    assert image.tags == ()


def test_a_non_object_index_entry_is_skipped(engine: Engine, tmp_path: Path) -> None:
    """Entries that are not objects name nothing; the layout's other image still loads."""
    reference = oci_index(lambda e: ["junk", 5, e], ref=":latest")(tmp_path)
    assert (Path(engine.image(reference).layer_dirs[0]) / "hello").read_bytes() == b"hello"


@pytest.mark.parametrize(("config", "field"), [
    ("hello", "config"), ([1], "config"), ({"Env": 5}, "config.Env"), ({"Cmd": 5}, "config.Cmd"),
    ({"Labels": []}, "config.Labels"), ({"ExposedPorts": []}, "config.ExposedPorts"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": "1s"}}, "config.Healthcheck.Interval"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Retries": True}}, "config.Healthcheck.Retries"),
    ({"StopSignal": 9}, "config.StopSignal"), ({"User": 0}, "config.User"), ({"Shell": "'"}, "config.Shell"),
])
def test_from_oci_names_the_field(config: Any, field: str) -> None:
    with pytest.raises(ImageError, match=rf"^image config: {field} must be "):
        ImageConfig.from_oci(config)


def test_from_oci_still_reads_good_configs() -> None:
    config = ImageConfig.from_oci({
        "Entrypoint": None, "Cmd": "sh -c 'echo hi'", "Env": ["A=1", "B"], "Labels": {"b": "2", "a": "1"},
        "ExposedPorts": {"80/tcp": {}}, "WorkingDir": None, "StopSignal": "SIGINT",
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_500_000_000, "Retries": 2},
    })
    assert config.default_command() == ["sh", "-c", "echo hi"]
    assert config.env == (("A", "1"), ("B", ""))
    assert config.labels == (("a", "1"), ("b", "2"))
    assert (config.exposed_ports, config.workdir, config.stop_signal) == (("80/tcp",), "", "SIGINT")
    assert config.healthcheck is not None
    assert (config.healthcheck.interval, config.healthcheck.retries) == (1.5, 2)
    assert ImageConfig.from_oci(None) == ImageConfig() == ImageConfig.from_oci({})
    assert ImageConfig.from_oci(config.to_oci()) == config
