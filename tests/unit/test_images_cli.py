"""The store commands (images, import, rmi, prune, du) as functions, through argparse."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pytest_minicontainer.images.cli_store import add_store_commands, human_size
from pytest_minicontainer.store import Store
from tests.imagetools import TarBuilder, write_oci_layout


def cli(store: Store, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="minicontainer")
    add_store_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.store_command(args, store)
    return status


def test_import_list_rmi_prune_du(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = write_oci_layout(tmp_path / "lay", [TarBuilder().file("big", b"x" * 200_000).bytes("gzip")])
    assert cli(store, "import", f"oci:{img.path}", "--tag", "demo:1", "-t", "demo:2") == 0
    out = capsys.readouterr().out
    assert img.manifest_digest in out and "demo:1, demo:2" in out

    assert cli(store, "images") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "LAYERS", "SIZE"]
    assert [line.split()[:3] for line in lines[1:]] == [["demo", "1", img.manifest_digest[7:19]],
                                                         ["demo", "2", img.manifest_digest[7:19]]]
    assert cli(store, "images", "-q") == 0
    assert capsys.readouterr().out.split() == [img.manifest_digest[7:19]]

    assert cli(store, "du") == 0
    out = capsys.readouterr().out
    assert "layers" in out and "demo:1,demo:2" in out

    assert cli(store, "rmi", "demo:1") == 0
    assert "Untagged: demo:1" in capsys.readouterr().out
    assert cli(store, "prune") == 0
    assert "reclaimed space: 0B" in capsys.readouterr().out  # still used by demo:2
    assert cli(store, "rmi", "demo:2") == 0
    assert f"Deleted: {img.manifest_digest}" in capsys.readouterr().out
    assert cli(store, "prune") == 0
    out = capsys.readouterr().out
    assert "kB" in out and "0B" not in out
    assert list((store.root / "layers").iterdir()) == []


def test_import_rootfs_dir_records_it(store: Store, tmp_path: Path) -> None:
    (tmp_path / "rootfs/etc").mkdir(parents=True)
    assert cli(store, "import", f"rootfs:{tmp_path / 'rootfs'}", "--tag", "local/rootfs") == 0
    assert store.load_image("local/rootfs").layer_dirs == (str(tmp_path / "rootfs"),)
    store.gc()  # a directory outside the store is never collected
    assert (tmp_path / "rootfs/etc").is_dir()


def test_errors_go_to_stderr_with_status_1(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(store, "import", "nothere:1") == 1
    err = capsys.readouterr().err
    assert "minicontainer import:" in err and "not in the store" in err
    assert cli(store, "rmi", "nothere:1") == 1
    assert "minicontainer rmi:" in capsys.readouterr().err


def test_human_size() -> None:
    sizes = [human_size(n) for n in (0, 999, 1000, 1_500_000, 3e9)]
    assert sizes == ["0B", "999B", "1.0kB", "1.5MB", "3.0GB"]
