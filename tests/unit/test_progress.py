"""Progress lines and bars made from a pull's byte counts (pytest_minicontainer.progress)."""

from __future__ import annotations

import io

import pytest

from pytest_minicontainer.progress import BlobBar, BlobLines, lines_for

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_blob_lines_say_start_quarters_and_done_per_blob() -> None:
    got: list[str] = []
    lines = BlobLines(got.append, prefix="reg/x:1 ")
    for done in range(0, 4_000_001, 100_000):  # 41 byte counts of one 4 MB blob
        lines(A, done, 4_000_000)
    lines(B, 10, None)  # a size the registry did not say
    lines(B, 20, None)
    assert got == [
        "reg/x:1 aaaaaaaaaaaa: downloading 4.0MB",
        "reg/x:1 aaaaaaaaaaaa: 1.0MB/4.0MB",
        "reg/x:1 aaaaaaaaaaaa: 2.0MB/4.0MB",
        "reg/x:1 aaaaaaaaaaaa: 3.0MB/4.0MB",
        "reg/x:1 aaaaaaaaaaaa: done, 4.0MB",
        "reg/x:1 bbbbbbbbbbbb: downloading",
    ]
    assert (lines.blobs, lines.bytes) == (2, 4_000_020)


def test_blob_lines_without_an_output_still_count() -> None:
    lines = BlobLines(None)
    lines(A, 5, 10)
    lines(A, 10, 10)
    assert (lines.blobs, lines.bytes) == (1, 10)


def test_blob_bar_redraws_one_line_per_blob() -> None:
    out = io.StringIO()
    bar = BlobBar(out)
    bar(A, 0, 100)
    bar(A, 100, 100)  # the end is always drawn, however soon it comes
    bar(B, 50, 100)
    bar.finish()
    text = out.getvalue()
    assert text.count("\n") == 2  # one finished line per blob
    assert "\raaaaaaaaaaaa: [" + "#" * 30 + "] 100B/100B" in text
    assert "\rbbbbbbbbbbbb: [" + "#" * 15 + "." * 15 + "] 50B/100B" in text


def test_progress_argument_forms(capsys: pytest.CaptureFixture[str]) -> None:
    got: list[str] = []
    assert lines_for(got.append) == got.append
    assert lines_for(None) is None and lines_for(False) is None
    to_stderr = lines_for(True)
    assert to_stderr is not None
    to_stderr("a line")
    assert capsys.readouterr().err == "a line\n"
    with pytest.raises(TypeError, match="progress must be a callable"):
        lines_for("yes")  # type: ignore[arg-type]
