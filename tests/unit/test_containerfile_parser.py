"""The Containerfile parser: instructions, continuations, comments, flags, forms, errors."""

from __future__ import annotations

import pytest

from pytest_minicontainer.build._parser import SUPPORTED, heredoc_bodies, parse
from pytest_minicontainer.errors import BuildError


def names(text: str) -> list[str]:
    return [i.name for i in parse(text)[0]]


def test_every_supported_instruction_parses() -> None:
    text = """FROM scratch AS base
RUN echo hi
COPY a /a
ADD b /b
ENV A=1
ARG B=2
WORKDIR /w
USER app
ENTRYPOINT ["/bin/x"]
CMD ["y"]
EXPOSE 80
LABEL k=v
SHELL ["/bin/sh", "-c"]
HEALTHCHECK CMD true
STOPSIGNAL SIGINT
VOLUME ["/data"]
ONBUILD RUN true
"""
    assert names(text) == ["FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "ENTRYPOINT", "CMD",
                           "EXPOSE", "LABEL", "SHELL", "HEALTHCHECK", "STOPSIGNAL", "VOLUME", "ONBUILD"]
    assert set(names(text)) == set(SUPPORTED)


def test_instructions_are_case_insensitive_and_keep_their_line() -> None:
    ins, _ = parse("\n\nfrom scratch\n  run   echo hi  \n")
    assert [(i.line, i.name, i.args) for i in ins] == [(3, "FROM", "scratch"), (4, "RUN", "echo hi")]


def test_continuations_join_and_skip_comment_lines() -> None:
    ins, _ = parse("FROM scratch\nRUN echo a \\\n  && echo b \\\n# a comment inside\n\n  && echo c\nCMD x\n")
    assert ins[1].line == 2
    assert ins[1].args == "echo a   && echo b   && echo c"  # Docker keeps the next line's indentation
    assert ins[2].line == 7


@pytest.mark.parametrize(("text", "args"), [
    ("RUN echo hello\\\nworld > /o1", "echo helloworld > /o1"),  # nothing is inserted
    ("RUN a\\\n   b", "a   b"),  # the next line's leading white space stays
    ("RUN a \\  \t\n b", "a  b"),  # blanks after the escape go with it
    ("ENV PATH=/a:\\\n/b", "PATH=/a:/b"),
    ("RUN a \\\n    # indented comment\n\n   \n  b", "a   b"),  # comments and blank lines are skipped
    ("RUN a \\\n\\\n b", "a  b"),  # an escape alone on a line continues too
    ("RUN a \\\r\n b\r", "a  b"),  # CRLF files
])
def test_continuations_join_as_docker_does(text: str, args: str) -> None:
    ins, _ = parse(f"FROM scratch\n{text}\n")
    assert ins[1].line == 2
    assert ins[1].args == args


def test_an_escaped_escape_at_the_end_does_not_continue() -> None:
    ins, _ = parse("FROM scratch\nRUN echo a\\\\\nRUN echo b\n")
    assert [(i.line, i.args) for i in ins[1:]] == [(2, "echo a\\\\"), (3, "echo b")]


def test_a_byte_order_mark_is_dropped() -> None:
    assert names("\ufeffFROM scratch\n") == ["FROM"]


def test_comments_and_blank_lines_are_ignored() -> None:
    assert names("# hello\n\n   # indented comment\nFROM scratch\n# tail\n") == ["FROM"]


def test_escape_directive_changes_the_continuation_character() -> None:
    ins, escape = parse("# escape=`\nFROM scratch\nRUN echo a `\n  b\nRUN c:\\dir\\\n")
    assert escape == "`"
    assert ins[1].args == "echo a   b"
    assert ins[2].args == "c:\\dir\\"  # the backslash is an ordinary character then


def test_bad_escape_directive_is_an_error() -> None:
    with pytest.raises(BuildError, match="line 1: invalid escape"):
        parse("# escape=x\nFROM scratch\n")


def test_exec_form_and_shell_form() -> None:
    ins, _ = parse('FROM scratch\nRUN ["echo", "a b"]\nRUN echo [x\nCMD []\n')
    assert ins[1].exec_form == ("echo", "a b")
    assert ins[2].exec_form is None
    assert ins[3].exec_form == ()


def test_exec_form_must_hold_strings() -> None:
    with pytest.raises(BuildError, match="line 2: RUN: the JSON form must be an array of strings"):
        parse('FROM scratch\nRUN ["echo", 1]\n')


def test_a_tab_separates_the_instruction_and_its_flags() -> None:
    ins, _ = parse("FROM\tscratch AS\tbase\nCOPY\t--chown=1:2\t\t--chmod=755 \ta /dst/\nRUN\t \techo\tx\n")
    assert [(i.name, i.args, i.flags) for i in ins] == [
        ("FROM", "scratch AS\tbase", {}), ("COPY", "a /dst/", {"chown": "1:2", "chmod": "755"}),
        ("RUN", "echo\tx", {})]


def test_flags_are_split_off() -> None:
    ins, _ = parse("FROM scratch\nCOPY --from=base --chown=1:2 --chmod=755 a b /dst/\n")
    assert ins[1].flags == {"from": "base", "chown": "1:2", "chmod": "755"}
    assert ins[1].args == "a b /dst/"


def test_unknown_flag_names_the_line_and_the_accepted_ones() -> None:
    with pytest.raises(BuildError, match=r"line 3: RUN does not support the flag --security \(accepted: --mount, "
                                         r"--network\)") as info:
        parse("FROM scratch\n\nRUN --security=insecure echo\n")
    assert info.value.line == 3


def test_run_mount_flags_are_kept_in_order() -> None:
    ins, _ = parse("FROM scratch\nRUN --mount=type=cache,target=/a --network=none --mount=type=tmpfs,target=/b x\n")
    assert ins[1].flags == {"mount": "type=cache,target=/a\ntype=tmpfs,target=/b", "network": "none"}
    assert ins[1].text == "RUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/b --network=none x"


def test_unknown_instruction_names_itself_and_its_line() -> None:
    with pytest.raises(BuildError, match=r"line 2: unknown instruction 'FORM'") as info:
        parse("FROM scratch\nFORM x\n")
    assert info.value.line == 2
    assert info.value.command == "FORM x"


@pytest.mark.parametrize("word", ["MAINTAINER"])
def test_refused_instructions_say_so(word: str) -> None:
    with pytest.raises(BuildError, match=rf"line 2: {word} is"):
        parse(f"FROM scratch\n{word} /x\n")


def test_first_instruction_must_be_from() -> None:
    with pytest.raises(BuildError, match="line 2: the first instruction"):
        parse("ARG X=1\nRUN echo\n")
    assert names("ARG X=1\nFROM scratch\n") == ["ARG", "FROM"]


def test_empty_file_and_missing_arguments() -> None:
    with pytest.raises(BuildError, match="no instructions"):
        parse("# nothing\n")
    with pytest.raises(BuildError, match="line 2: RUN needs arguments"):
        parse("FROM scratch\nRUN\n")


def test_shell_needs_json() -> None:
    with pytest.raises(BuildError, match="line 2: SHELL needs the JSON form"):
        parse("FROM scratch\nSHELL /bin/bash -c\n")


def test_run_heredocs_take_their_lines_as_written() -> None:
    """RUN heredocs (issue 16): the lines up to each delimiter belong to the instruction, blank
    lines and "#" lines included; what follows is an instruction again."""
    ins, _ = parse("FROM scratch\nRUN <<EOF\necho hi\n# not a comment here\n\nEOF\nENV A=1\n")
    assert [(i.line, i.name, i.heredoc) for i in ins] == [
        (1, "FROM", ""), (2, "RUN", "echo hi\n# not a comment here\n\nEOF"), (7, "ENV", "")]


@pytest.mark.parametrize(("line", "body"), [
    ("RUN cat <<EOF > /x", "hello\nEOF"), ("RUN cat <<-EOF > /x", "hello\n\tEOF"),
    ('RUN cat <<"EOF" > /x', "hello\nEOF"), ("RUN cat <<'EOF'", "hello\nEOF"), ("RUN cat 0<<EOF", "hello\nEOF"),
    ("RUN echo one && \\\n  cat <<EOF > /x", "hello\nEOF"),
    ("RUN cat <<A <<B", "a\nA\nb\nB"),
])
def test_each_heredoc_ends_at_its_delimiter(line: str, body: str) -> None:
    ins, _ = parse(f"FROM scratch\n{line}\n{body}\nCMD done\n")
    assert ins[1].heredoc == body and ins[-1].name == "CMD"


def test_an_open_heredoc_is_a_clear_error() -> None:
    with pytest.raises(BuildError, match="line 2: the heredoc <<EOF is not closed"):
        parse("FROM scratch\nRUN cat <<EOF\nhello\n")
    with pytest.raises(BuildError, match="line 2: the heredoc <<EOF is not closed"):
        parse("FROM scratch\nCOPY <<EOF /x\nhello\n")


@pytest.mark.parametrize(("line", "body", "expected"), [
    ("COPY <<EOF /x", "hello\n  indented\nEOF", {"EOF": ("hello\n  indented\n", True, False)}),
    ("COPY <<'EOF' /x", "a $B\nEOF", {"EOF": ("a $B\n", False, False)}),
    ('ADD --chmod=644 <<"f.txt" /x', "a\nf.txt", {"f.txt": ("a\n", False, False)}),
    ("COPY <<-EOF /x", "\t\ta\n\tEOF", {"EOF": ("a\n", True, True)}),
    ("COPY <<one <<two /d/", "1\none\n2\ntwo", {"one": ("1\n", True, False), "two": ("2\n", True, False)}),
    ("COPY <<EOF /x", "EOF", {"EOF": ("", True, False)}),
])
def test_inline_files_of_copy_and_add(line: str, body: str, expected: dict[str, tuple[str, bool, bool]]) -> None:
    ins, _ = parse(f"FROM scratch\n{line}\n{body}\nCMD x\n")
    assert [i.name for i in ins] == ["FROM", line.split()[0], "CMD"]
    assert heredoc_bodies(ins[1]) == expected


@pytest.mark.parametrize("line", [
    'RUN echo "<<EOF"', "RUN echo '<<EOF' x", "RUN cat <<<here", "RUN echo a<<b", "RUN echo a \\<<EOF",
    'RUN ["cat", "<<EOF"]', "CMD cat <<EOF", "RUN cat << EOF",
])
def test_what_is_not_a_heredoc_is_left_to_the_shell(line: str) -> None:
    ins, _ = parse(f"FROM scratch\n{line}\n")
    assert len(ins) == 2


def test_a_double_dash_ends_the_flags() -> None:
    """``COPY -- a b`` (and ``COPY --chown=1 -- --odd-name /dst``), as BuildKit reads them."""
    ins, _ = parse("FROM scratch\nCOPY -- a b\nCOPY --chown=1 -- --odd-name /dst\n")
    assert (ins[1].flags, ins[1].args) == ({}, "a b")
    assert (ins[2].flags, ins[2].args) == ({"chown": "1"}, "--odd-name /dst")
