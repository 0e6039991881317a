"""The .env / env_file syntax of the Compose Specification (05-services.md, "Env_file format")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_minicontainer import ComposeError
from pytest_minicontainer.compose import ComposeWarning, load
from pytest_minicontainer.compose._dotenv import DotenvError, parse_dotenv

LOOKUP = {"HOME": "/home/u", "EMPTY": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("VAR=VAL", {"VAR": "VAL"}),
    ("VAR=\"VAL\"", {"VAR": "VAL"}),
    ("VAR='VAL'", {"VAR": "VAL"}),
    ("VAR=", {"VAR": ""}),
    ("VAR=''", {"VAR": ""}),
    ("VAR = spaced value  ", {"VAR": "spaced value"}),
    ("VAR: yaml style", {"VAR": "yaml style"}),
    ("export VAR=exported", {"VAR": "exported"}),
    ("export   VAR='x'", {"VAR": "x"}),
    ("# comment\n\n  \nVAR=1\n# another", {"VAR": "1"}),
    ("VAR=VAL # comment", {"VAR": "VAL"}),
    ("VAR=VAL# not a comment", {"VAR": "VAL# not a comment"}),
    ("VAR=\"VAL # not a comment\"", {"VAR": "VAL # not a comment"}),
    ("VAR=\"VAL\" # comment", {"VAR": "VAL"}),
    ("VAR='$OTHER'", {"VAR": "$OTHER"}),
    ("VAR='${HOME}'", {"VAR": "${HOME}"}),
    ("VAR=$HOME/x", {"VAR": "/home/u/x"}),
    ("VAR=\"${HOME}/x\"", {"VAR": "/home/u/x"}),
    ("VAR=${UNSET:-fallback}", {"VAR": "fallback"}),
    ("A=1\nB=${A}2\nC=$B$A", {"A": "1", "B": "12", "C": "121"}),
    ("VAR='Let\\'s go!'", {"VAR": "Let's go!"}),
    ("VAR=\"{\\\"hello\\\": \\\"json\\\"}\"", {"VAR": "{\"hello\": \"json\"}"}),
    ("VAR=\"some\\tvalue\"", {"VAR": "some\tvalue"}),
    ("VAR='some\\tvalue'", {"VAR": "some\\tvalue"}),
    ("VAR=some\\tvalue", {"VAR": "some\\tvalue"}),
    ("VAR=\"a\\nb\\\\c\\rd\"", {"VAR": "a\nb\\c\rd"}),
    ("VAR=\"\\$HOME\"", {"VAR": "$HOME"}),
    ("VAR=$$HOME", {"VAR": "$HOME"}),
    ("VAR=\"\\0101\"", {"VAR": "A"}),
    ("VAR='first\nsecond'", {"VAR": "first\nsecond"}),
    ("VAR=\"a\nb\"\nNEXT=1", {"VAR": "a\nb", "NEXT": "1"}),
    ("HOME", {"HOME": "/home/u"}),  # inherited from the lookup
    ("NOT_SET_ANYWHERE", {}),  # left unset
    ("EMPTY", {"EMPTY": ""}),
    ("VAR.WITH.DOTS=dots\nVAR-WITH-DASHES=d\nV[0]=b", {"VAR.WITH.DOTS": "dots", "VAR-WITH-DASHES": "d", "V[0]": "b"}),
    ("\ufeffBOM=1", {"BOM": "1"}),
    ("A=1\nA=2", {"A": "2"}),
    ("URL=postgres://u:p@h:5432/db?sslmode=disable", {"URL": "postgres://u:p@h:5432/db?sslmode=disable"}),
])
def test_syntax(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text, LOOKUP.get) == expected


def test_lookup_wins_over_earlier_lines() -> None:
    assert parse_dotenv("HOME=/x\nP=$HOME", LOOKUP.get) == {"HOME": "/x", "P": "/home/u"}


@pytest.mark.parametrize(("text", "line", "message"), [
    ("GOOD=1\nBAD VAR=1", 2, "cannot contain a space"),
    ("A=1\n\nB$=2", 3, "unexpected character '$'"),
    ("=value", 1, "no variable name"),
    ("A='open\nB=2", 1, "unterminated 'quoted' value"),
    ("A=\"x\" trailing", 1, "after the closing quote"),
    ("A=${B", 1, "no closing brace"),
])
def test_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(DotenvError, match=re.escape(message)) as info:
        parse_dotenv(text)
    assert info.value.line == line


def test_raw_format_takes_values_as_they_are() -> None:
    text = "# c\nA='quoted $HOME'\nB=\"x\" # not a comment\nHOME\n"
    assert parse_dotenv(text, LOOKUP.get, raw=True) == {"A": "'quoted $HOME'", "B": "\"x\" # not a comment",
                                                        "HOME": "/home/u"}


def test_unset_variables_are_reported() -> None:
    unset: set[str] = set()
    assert parse_dotenv("A=$NOPE-${ALSO_NOPE:-d}", unset=unset) == {"A": "-d"}
    assert unset == {"NOPE"}


def write(tmp_path: Path, compose: str, **files: str) -> Path:
    (tmp_path / "compose.yaml").write_text(compose)
    for name, text in files.items():
        (tmp_path / name.replace("_", ".")).write_text(text)
    return tmp_path


def test_env_files_then_environment(tmp_path: Path) -> None:
    compose = """\
services:
  s:
    image: x
    env_file:
      - a.env
      - path: b.env
      - path: missing.env
        required: false
    environment:
      FROM_ENV: yes
      OVERRIDDEN: by-environment
      REMOVED:
"""
    write(tmp_path, compose, a_env="A=1\nOVERRIDDEN=by-a\nREMOVED=by-a\nSHARED=a\n",
          b_env="SHARED=b\nREF=${A}-${FROM_ENV}\n")
    env = load(tmp_path).services["s"].environment
    # later files win, environment wins over them, a name without a value in environment and in
    # the interpolation environment unsets the variable; env_file values see environment's values
    assert env == {"A": "1", "OVERRIDDEN": "by-environment", "SHARED": "b", "REF": "1-yes", "FROM_ENV": "yes"}


def test_env_file_name_only_takes_the_interpolation_environment(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    env_file: a.env\n    environment: [TOKEN]\n",
          a_env="USER_HOME\n")
    env = load(tmp_path, env={"USER_HOME": "/h", "TOKEN": "t"}).services["s"].environment
    assert env == {"USER_HOME": "/h", "TOKEN": "t"}


def test_raw_env_file(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    env_file:\n      - path: a.env\n        format: raw\n",
          a_env="A='$x'\n")
    assert load(tmp_path).services["s"].environment == {"A": "'$x'"}


def test_missing_required_env_file(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  web:\n    image: x\n    env_file: [ok.env, gone.env]\n", ok_env="")
    with pytest.raises(ComposeError, match=r"gone\.env does not exist") as info:
        load(tmp_path)
    assert (info.value.service, info.value.key) == ("web", "env_file[1]")


def test_bad_env_file_line_names_env_file_line_and_service(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  web:\n    image: x\n    env_file: a.env\n", a_env="OK=1\nNOT OK=2\n")
    with pytest.raises(ComposeError) as info:
        load(tmp_path)
    assert (info.value.file, info.value.line, info.value.service, info.value.key) == (
        str(tmp_path / "a.env"), 2, "web", "env_file")
    assert "cannot contain a space" in str(info.value) and "services.web.env_file" in str(info.value)


def test_bad_dotenv_names_its_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n", _env="A=1\nB='never closed\n")
    with pytest.raises(ComposeError) as info:
        load(tmp_path)
    assert (info.value.file, info.value.line) == (str(tmp_path / ".env"), 2)


def test_unset_variable_in_env_file_warns_with_its_file(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    env_file: a.env\n", a_env="A=$NOT_SET_HERE\n")
    with pytest.warns(ComposeWarning, match="variable NOT_SET_HERE is not set") as record:
        assert load(tmp_path).services["s"].environment == {"A": ""}
    assert record[0].filename == str(tmp_path / "a.env")
