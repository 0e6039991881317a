"""Reading compose YAML as docker compose does (YAML 1.2 core schema), and Go durations."""

from __future__ import annotations

import math
import re

import pytest

from pytest_minicontainer import ComposeError
from pytest_minicontainer.compose import parse_duration
from pytest_minicontainer.compose._yaml import read_yaml


@pytest.mark.parametrize(("text", "expected"), [
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"),  # strings in YAML 1.2
    ("true", True), ("False", False), ("TRUE", True),
    ("22:22", "22:22"),  # not base 60
    ("2024-01-01", "2024-01-01"),  # not a date
    ("~", None), ("null", None), ("", None),
    ("42", 42), ("-7", -7), ("+3", 3), ("1_000", 1000), ("0o17", 15), ("0x1f", 31), ("0644", 0o644), ("0", 0),
    ("1.5", 1.5), ("1e3", 1000.0), (".5", 0.5), ("-.inf", -math.inf),
    ("'42'", "42"), ('"true"', "true"), ("'~'", "~"),
    ("3.12", 3.12), ("1.10", 1.1),
    ("!!str 42", "42"),
])
def test_scalars_follow_yaml_1_2(text: str, expected: object) -> None:
    value, _ = read_yaml(f"key: {text}\n", "f.yaml")
    assert value == {"key": expected}
    assert type(value["key"]) is type(expected)


def test_nan() -> None:
    value, _ = read_yaml("key: .nan\n", "f.yaml")
    assert math.isnan(value["key"])


def test_merge_keys_and_lines() -> None:
    text = """\
x-base: &base
  image: base
  restart: "no"
x-more: &more
  image: more
  user: app
services:
  web:
    <<: [*base, *more]
    image: own
"""
    value, lines = read_yaml(text, "f.yaml")
    assert value["services"]["web"] == {"image": "own", "restart": "no", "user": "app"}
    assert lines[("services", "web", "image")] == 10  # the explicit key, not the merged one
    assert lines[("services", "web", "user")] == 6


@pytest.mark.parametrize(("text", "message", "line"), [
    ("a: 1\na: 2\n", "duplicate key 'a' in the top level", 2),
    ("s:\n  x: 1\n  x: 2\n", "duplicate key 'x' in s", 3),
    ("s:\n  1: x\n", "keys must be strings, not '1' in s (quote it)", 2),
    ("a: !reset []\n", "unsupported YAML tag '!reset'", 1),
    ("a: !!binary aGk=\n", "unsupported YAML tag", 1),
    ("a: [1\n", "not valid YAML", 2),
    ("a: 1\n---\nb: 2\n", "several YAML documents", 3),
    ("a: &x [*x]\n", "too many values", 1),
    ("<<: 1\n", "a merge key (<<) takes a mapping", 1),
])
def test_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(ComposeError, match=re.escape(message)) as info:
        read_yaml(text, "f.yaml")
    assert (info.value.file, info.value.line) == ("f.yaml", line)


def test_alias_bombs_are_refused() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True))
    with pytest.raises(ComposeError, match="too many values"):
        read_yaml(text, "f.yaml")


def test_empty_document() -> None:
    assert read_yaml("# nothing\n", "f.yaml") == (None, {})


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("1s", 1.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h2m3.5s", 3723.5), ("1.5h", 5400.0),
    ("10us", 10e-6), ("10\u00b5s", 10e-6), ("7ns", 7e-9), (".5s", 0.5), ("5.s", 5.0), ("+2s", 2.0),
    ("1d", 86400.0), ("1w", 604800.0), ("1h1h", 7200.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"), ("10", "expected a number and a unit"), ("s", "expected a number and a unit"),
    ("1x", "unknown unit 'x'"), ("-1s", "negative"), ("1 s", "expected a number and a unit"),
    ("1sm", "unknown unit 'sm'"), (".s", "expected a number and a unit"),
])
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)
