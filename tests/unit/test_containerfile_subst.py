"""ARG/ENV substitution and quoting, as Docker does them."""

from __future__ import annotations

import pytest

from pytest_minicontainer.build._subst import expand, process_words, split_words, words
from pytest_minicontainer.errors import BuildError

ENV = {"A": "alpha", "EMPTY": "", "SP": "x y"}


@pytest.mark.parametrize(("text", "expected"), [
    ("$A", "alpha"),
    ("${A}", "alpha"),
    ("pre-${A}-post", "pre-alpha-post"),
    ("$A.txt", "alpha.txt"),
    ("$MISSING", ""),
    ("${MISSING:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${MISSING-dflt}", "dflt"),
    ("${A:+alt}", "alt"),
    ("${MISSING:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${MISSING:-${A}}", "alpha"),
    ("\\$A", "$A"),
    ("'$A'", "$A"),
    ('"$A b"', "alpha b"),
    ("a\\ b", "a b"),
    ("$", "$"),
    ("cost: 5$", "cost: 5$"),
])
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


def test_required_variable() -> None:
    assert expand("${A:?must be set}", ENV) == "alpha"
    with pytest.raises(BuildError, match="line 7: substitution failed: MISSING: must be set"):
        expand("${MISSING:?must be set}", ENV, line=7)


def test_bad_substitutions_name_the_line() -> None:
    with pytest.raises(BuildError, match="line 3: substitution failed"):
        expand("${A", ENV, line=3)
    with pytest.raises(BuildError, match="unsupported modifier"):
        expand("${A#x}", ENV, line=3)
    with pytest.raises(BuildError, match="unterminated"):
        expand('"open', ENV, line=3)


def test_words_split_before_expansion() -> None:
    assert words('a "b c" $SP', ENV) == ["a", "b c", "x y"]
    assert split_words("k='v w' z") == ["k='v w'", "z"]


def test_backtick_escape() -> None:
    assert expand("`$A", ENV, escape="`") == "$A"


# BuildKit's lexer (frontend/dockerfile/shell): inside double quotes the escape removes itself
# only before ", $ and itself; anywhere else there it stays.  Outside quotes it always escapes,
# inside single quotes it is an ordinary character (issue 16).
@pytest.mark.parametrize(("text", "expected"), [
    ('"\\u@\\h:\\w\\$ "', "\\u@\\h:\\w$ "),  # ENV PS1="\u@\h:\w\$ "
    ('"^\\d+$"', "^\\d+$"),  # ENV RE="^\d+$"
    ('"a\\"b"', 'a"b'),
    ('"a\\\\b"', "a\\b"),
    ('"a\\$A"', "a$A"),
    ('"a\\nb"', "a\\nb"),
    ('"$A\\t"', "alpha\\t"),
    ("a\\nb", "anb"),  # unquoted: the escape always escapes
    ("'a\\nb'", "a\\nb"),  # single quotes: literal
    ('"C:\\\\dir"', "C:\\dir"),
])
def test_escapes_inside_double_quotes_follow_buildkit(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


# BuildKit's lexer on names (issue 16): a digit starts a name of digits only, a special
# parameter (@ * # ? - $ ! 0) is a one-character name; a Dockerfile has none of them set.
@pytest.mark.parametrize(("text", "expected"), [
    ("$1x", "x"),
    ("${1}", ""),
    ("$@", ""),
    ("${@}", ""),
    ("a$#b", "ab"),
    ("$A1", ""),  # letters and digits after a letter are one name (unset here)
    ("$A-1", "alpha-1"),
    ("x$", "x$"),  # a lone dollar at the end stays
    ("a\\", "a"),  # a lone trailing escape is dropped (BuildKit: the escape of nothing)
    ("\u00e4\\", "\u00e4"),
    ("'a\\'", "a\\"),  # in single quotes it is a character like any other
])
def test_names_follow_buildkit(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


# BuildKit's ProcessWords (EXPOSE): white space splits words where no quote protects it, also
# inside what an unquoted variable expands to; leading and trailing white space of such a value
# ends the word before and after it, and makes no empty word.
WORD_ENV = {"TWO": "abc  def", "LEAD": "  ab c", "TRAIL": "ab c   ", "NONE": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("one", ["one"]),
    ("one  two", ["one", "two"]),
    ("x${NONE}y", ["xy"]),
    ("x${TWO}y", ["xabc", "defy"]),
    ('x"${TWO}"y', ["xabc  defy"]),
    ('x "${TWO}"y', ["x", "abc  defy"]),
    ("x${LEAD}y", ["x", "ab", "cy"]),
    ('x"${LEAD}" y', ["x  ab c", "y"]),
    ("x${LEAD}", ["x", "ab", "c"]),
    ("x${TRAIL}", ["xab", "c"]),
    ("x${TRAIL}y", ["xab", "c", "y"]),
    ('x"${TRAIL}"y', ["xab c   y"]),
    ('x" spaced  "', ["x spaced  "]),
    ("a\\ b", ["a b"]),
    ('a\\" b', ['a"', "b"]),
    ('a"\\\\b"', ["a\\b"]),
    ("a'\\\\b'", ["a\\\\b"]),
    ("a'$TWO'", ["a$TWO"]),
    ("$TWO", ["abc", "def"]),
])
def test_process_words_follow_buildkit(text: str, expected: list[str]) -> None:
    assert process_words(text, WORD_ENV) == expected


def test_process_words_refuse_an_open_quote() -> None:
    with pytest.raises(BuildError, match="unterminated"):
        process_words('a" b', WORD_ENV, line=2)
