"""The Containerfile parser and substitution fed generated text: a BuildError or a result, never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_minicontainer.build._parser import SUPPORTED, parse
from pytest_minicontainer.build._subst import expand, words
from pytest_minicontainer.errors import BuildError

WORDS = st.sampled_from([*sorted(SUPPORTED), "FROM", "RUN", "VOLUME", "ONBUILD", "frob", "#", "# escape=`",
                         "# syntax=x", "\\", "`", "[", "]", '"', "'", "$", "${", "}", ":-", "--from=a",
                         "--chown=1:1", "AS", "=", " ", "\t", "\n", "\\\n", "<<EOF", "EOF", "scratch", "a b"])
TEXT = st.lists(st.one_of(WORDS, st.text(max_size=8)), max_size=40).map("".join)

# no example database: the tests must not write into the checkout (it may be read-only)
fuzz = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(TEXT)
def test_parse_never_crashes(text: str) -> None:
    try:
        instructions, escape = parse(text)
    except BuildError as exc:
        assert exc.line is None or exc.line >= 1
        return
    assert escape in ("\\", "`")
    for inst in instructions:
        assert inst.name in SUPPORTED
        assert inst.line >= 1


@fuzz
@given(st.lists(st.one_of(st.sampled_from(["$", "${", "}", ":-", ":+", ":?", "A", "B", "\\", "`", "x", " "]),
                          st.text(max_size=4)), max_size=30).map("".join))
def test_substitution_never_crashes(text: str) -> None:
    env = {"A": "1", "B": ""}
    try:
        out = expand(text, env, line=3)
        split = words(text, env, line=3)
    except BuildError as exc:
        assert exc.line == 3
        return
    assert isinstance(out, str)
    assert all(isinstance(w, str) for w in split)
