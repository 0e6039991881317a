"""Planning: configs after each step, ARG scoping, COPY sources checked before anything runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pytest_minicontainer.build._context import content_digest, resolve_sources, walk
from pytest_minicontainer.build._ignore import IgnoreRules, load_ignore, parse_ignore
from pytest_minicontainer.build._parser import parse
from pytest_minicontainer.build._plan import Stage, make_plan
from pytest_minicontainer.errors import BuildError
from pytest_minicontainer.image import HealthCheck, Image, ImageConfig

BASE = Image(digest="sha256:" + "b" * 64, config=ImageConfig(env=(("PATH", "/bin"),), cmd=("sh",)))


def plan(text: str, context: Path, build_args: dict[str, str] | None = None, target: str | None = None,
         seen: list[str] | None = None) -> list[Stage]:
    def resolve(ref: str) -> Image:
        if seen is not None:
            seen.append(ref)
        return BASE

    ins, escape = parse(text)
    return make_plan(ins, escape, build_args=build_args or {}, target=target, resolve=resolve,
                     context=str(context), ignore=load_ignore(str(context)))


def test_metadata_instructions_build_the_config(tmp_path: Path) -> None:
    stages = plan("""FROM base
ENV A=1 B="two words"
ENV LEGACY value with spaces
ENV C=${A}-x
WORKDIR app
WORKDIR sub
USER app:app
LABEL version="1.0" "other"=$A
EXPOSE 80 53/udp
STOPSIGNAL SIGINT
SHELL ["/bin/bash", "-c"]
HEALTHCHECK --interval=1m30s --timeout=500ms --retries=5 CMD curl -f localhost
ENTRYPOINT ["/entry"]
""", tmp_path)
    cfg = stages[0].config
    assert cfg.env == (("PATH", "/bin"), ("A", "1"), ("B", "two words"), ("LEGACY", "value with spaces"),
                       ("C", "1-x"))
    assert cfg.workdir == "/app/sub"
    assert cfg.user == "app:app"
    assert cfg.labels == (("other", "1"), ("version", "1.0"))
    assert cfg.exposed_ports == ("53/udp", "80/tcp")
    assert cfg.stop_signal == "SIGINT"
    assert cfg.shell == ("/bin/bash", "-c")
    assert cfg.healthcheck == HealthCheck(("CMD-SHELL", "curl -f localhost"), interval=90.0, timeout=0.5, retries=5)
    assert cfg.entrypoint == ("/entry",)
    assert cfg.cmd is None  # a new ENTRYPOINT drops the base image's CMD, as in Docker


def test_cmd_shell_form_uses_the_shell_and_run_keeps_variables(tmp_path: Path) -> None:
    stages = plan('FROM base\nSHELL ["/bin/ash", "-eo"]\nCMD echo $HOME\nRUN echo "$X"\nHEALTHCHECK NONE\n',
                  tmp_path)
    assert stages[0].config.cmd == ("/bin/ash", "-eo", "echo $HOME")
    assert stages[0].steps[2].argv == ("/bin/ash", "-eo", 'echo "$X"')
    assert stages[0].config.healthcheck == HealthCheck(("NONE",))


def test_arg_scoping_and_build_args(tmp_path: Path) -> None:
    seen: list[str] = []
    text = """ARG TAG=1.0
ARG REG
FROM img:$TAG
ARG TAG
ARG OTHER=dflt
ARG UNSET
ENV FROMARG=$TAG-$OTHER
RUN true
"""
    stages = plan(text, tmp_path, seen=seen)
    assert seen == ["img:1.0"]
    assert stages[0].config.env_dict["FROMARG"] == "1.0-dflt"
    run = stages[0].steps[-1]
    assert run.run_env == {"TAG": "1.0", "OTHER": "dflt"}  # UNSET is declared, not set
    stages = plan(text, tmp_path, {"TAG": "2.0", "OTHER": "given"}, seen=seen)
    assert seen[-1] == "img:2.0"
    assert stages[0].config.env_dict["FROMARG"] == "2.0-given"


def test_arg_without_a_value_is_unset_not_empty(tmp_path: Path) -> None:
    text = ("ARG G\nFROM base\nARG X\nARG G\nARG KEPT=1\nARG KEPT\n"
            "ENV Y=${X-dflt} Z=${X+set}- W=${G-gdflt} K=$KEPT\nRUN true\n")
    stages = plan(text, tmp_path)
    env = stages[0].config.env_dict
    assert (env["Y"], env["Z"], env["W"], env["K"]) == ("dflt", "-", "gdflt", "1")
    assert stages[0].steps[-1].run_env == {"KEPT": "1"}  # a RUN does not see X at all
    given = plan(text, tmp_path, {"X": "", "G": "g"})  # passed empty: set, as in Docker
    env = given[0].config.env_dict
    assert (env["Y"], env["Z"], env["W"]) == ("", "set-", "g")
    assert given[0].steps[-1].run_env == {"X": "", "G": "g", "KEPT": "1"}


def test_continued_lines_keep_their_text(tmp_path: Path) -> None:
    stages = plan("FROM base\nENV PATH=/a:\\\n/b LEGACY\\\n=x\nENV TABBED\tvalue with\tblanks\n", tmp_path)
    env = stages[0].config.env_dict
    assert (env["PATH"], env["LEGACY"], env["TABBED"]) == ("/a:/b", "x", "value with\tblanks")
    with pytest.raises(BuildError, match="line 2: ENV: '/b' is not KEY=VALUE"):
        plan("FROM base\nENV PATH=/a: \\\n/b\n", tmp_path)  # a blank before the escape stays


def test_global_arg_is_invisible_in_a_stage_unless_declared(tmp_path: Path) -> None:
    stages = plan("ARG V=1\nFROM base\nENV X=${V:-unset}\n", tmp_path)
    assert stages[0].config.env_dict["X"] == "unset"


def test_env_overrides_arg_for_run(tmp_path: Path) -> None:
    stages = plan("FROM base\nARG A=arg\nENV A=env\nRUN true\n", tmp_path)
    assert stages[0].steps[-1].run_env == {}


def test_stages_target_and_from_stage(tmp_path: Path) -> None:
    text = "FROM base AS one\nENV S=1\nFROM one AS two\nENV T=2\nFROM base AS three\n"
    stages = plan(text, tmp_path)
    assert [s.name for s in stages] == ["one", "two", "three"]
    assert stages[1].base_stage == 0
    assert stages[1].config.env_dict == {"PATH": "/bin", "S": "1", "T": "2"}
    assert [s.name for s in plan(text, tmp_path, target="two")] == ["one", "two"]
    assert len(plan(text, tmp_path, target="0")) == 1
    with pytest.raises(BuildError, match="target stage 'nope' is not in the Containerfile"):
        plan(text, tmp_path, target="nope")


def test_duplicate_stage_name(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="line 2: duplicate stage name"):
        plan("FROM base AS a\nFROM base AS a\n", tmp_path)


def test_copy_sources_are_checked_while_planning(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("secret")
    (tmp_path / "link").symlink_to(outside)
    (tmp_path / ".dockerignore").write_text("ignored.txt\n")
    (tmp_path / "ignored.txt").write_text("x")
    with pytest.raises(BuildError, match=re.escape("line 3: COPY source 'missing.txt' does not exist")):
        plan("FROM base\nCOPY ok.txt /\nCOPY missing.txt /\n", tmp_path)
    with pytest.raises(BuildError, match=re.escape("line 2: COPY source '../x' is outside the build context")):
        plan("FROM base\nCOPY ../x /\n", tmp_path)
    with pytest.raises(BuildError, match="line 2: COPY source 'link' leads outside the build context"):
        plan("FROM base\nCOPY link /\n", tmp_path)
    with pytest.raises(BuildError, match=re.escape("line 2: ADD source 'ignored.txt' is excluded by .dockerignore")):
        plan("FROM base\nADD ignored.txt /\n", tmp_path)
    with pytest.raises(BuildError, match=re.escape("line 2: COPY source '*.nothing' matches no file")):
        plan("FROM base\nCOPY *.nothing /\n", tmp_path)
    with pytest.raises(BuildError, match="remote sources are not supported"):
        plan("FROM base\nADD https://example.com/x /\n", tmp_path)


def test_a_name_starting_with_two_dots_is_inside_the_context(tmp_path: Path) -> None:
    (tmp_path / "..foo").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "..bar").write_text("y")
    stages = plan("FROM base\nCOPY ..foo /x\nCOPY d/..bar ./d/../..foo /y/\n", tmp_path)
    assert [s.rel for s in stages[0].steps[0].sources] == ["..foo"]
    assert [s.rel for s in stages[0].steps[1].sources] == ["d/..bar", "..foo"]
    for outside in ("..", "../x", "./../x", "d/../../x", "/../x"):
        message = f"line 2: COPY source {outside!r} is outside the build context"
        with pytest.raises(BuildError, match=re.escape(message)):
            plan(f"FROM base\nCOPY {outside} /\n", tmp_path)


def _exception_context(root: Path) -> None:
    for rel, text in (("docs/README.md", "readme"), ("docs/other.md", "other"), ("docs/deep/x.md", "deep"),
                      ("sub/keep.txt", "keep"), ("sub/drop.tmp", "drop"), ("top.tmp", "top")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / ".dockerignore").write_text("docs\n!docs/README.md\n*.tmp\nsub/*.tmp\n")


def test_an_exception_below_an_excluded_directory_is_copied(tmp_path: Path) -> None:
    _exception_context(tmp_path)
    stages = plan("FROM base\nCOPY . /app/\nCOPY docs /docs/\nCOPY do* /glob/\n", tmp_path)
    ignore = load_ignore(str(tmp_path))
    whole, docs, glob = stages[0].steps
    assert sorted(rel for rel, _ in walk(whole.sources[0], ignore)) == [
        ".dockerignore", "docs", "docs/README.md", "sub", "sub/keep.txt"]
    # the excluded directory comes just before what it holds (parents first)
    entries = [rel for rel, _ in walk(whole.sources[0], ignore)]
    assert entries.index("docs") == entries.index("docs/README.md") - 1
    assert [rel for rel, _ in walk(docs.sources[0], ignore)] == ["README.md"]
    assert [s.rel for s in glob.sources] == ["docs"]
    with pytest.raises(BuildError, match=re.escape("line 2: COPY source 'docs/deep' is excluded by .dockerignore")):
        plan("FROM base\nCOPY docs/deep /x/\n", tmp_path)


def test_the_cache_key_covers_re_included_files(tmp_path: Path) -> None:
    _exception_context(tmp_path)

    def digest() -> str:
        return plan("FROM base\nCOPY . /app/\n", tmp_path)[0].steps[0].content

    first = digest()
    (tmp_path / "docs" / "other.md").write_text("excluded: no change")
    assert digest() == first
    (tmp_path / "docs" / "README.md").write_text("re-included: a change")
    assert digest() != first


def test_copy_destination_and_flags(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    stages = plan('FROM base\nWORKDIR /w\nCOPY --chown=1:2 --chmod=640 *.txt sub/\nCOPY ["a.txt", "x"]\n', tmp_path)
    copy = stages[0].steps[1]
    assert [s.rel for s in copy.sources] == ["a.txt", "b.txt"]
    assert (copy.dest, copy.dest_is_dir, copy.chown, copy.chmod) == ("/w/sub", True, "1:2", 0o640)
    assert (stages[0].steps[2].dest, stages[0].steps[2].dest_is_dir) == ("/w/x", False)
    with pytest.raises(BuildError, match="only octal modes"):
        plan("FROM base\nCOPY --chmod=u+x a.txt /\n", tmp_path)


def test_glob_matches_dotfiles_and_honours_ignore(tmp_path: Path) -> None:
    (tmp_path / ".hidden.cfg").write_text("h")
    (tmp_path / "a.cfg").write_text("a")
    (tmp_path / "b.cfg").write_text("b")
    found = resolve_sources(str(tmp_path), ["*.cfg"], parse_ignore("b.cfg", "x"), line=1, command="COPY")
    assert [s.rel for s in found] == [".hidden.cfg", "a.cfg"]


def test_content_digest_ignores_mtime_but_not_bytes_or_mode(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f"
    f.write_text("one")
    src = resolve_sources(str(tmp_path), ["d"], IgnoreRules(), line=1, command="COPY")
    first = content_digest(src, IgnoreRules())
    os.utime(f, (1, 1))
    assert content_digest(src, IgnoreRules()) == first
    f.chmod(0o600)
    second = content_digest(src, IgnoreRules())
    assert second != first
    f.write_text("two")
    assert content_digest(src, IgnoreRules()) not in (first, second)
    (tmp_path / "d" / "skip").write_text("x")
    assert content_digest(src, parse_ignore("d/skip")) == content_digest(
        resolve_sources(str(tmp_path), ["d"], IgnoreRules(), line=1, command="COPY"), parse_ignore("d/skip"))


def test_from_errors_name_the_line(tmp_path: Path) -> None:
    def resolve(ref: str) -> Image:
        from pytest_minicontainer.errors import ImageNotFound

        raise ImageNotFound(ref)

    ins, escape = parse("FROM nothing:here\n")
    with pytest.raises(BuildError, match="line 1: FROM nothing:here: image not found"):
        make_plan(ins, escape, build_args={}, target=None, resolve=resolve, context=str(tmp_path),
                  ignore=IgnoreRules())
    with pytest.raises(BuildError, match="line 2: substitution failed"):
        plan("FROM base\nENV X=${Y:?needed}\n", tmp_path)


def test_stages_after_the_target_are_not_planned(tmp_path: Path) -> None:
    seen: list[str] = []
    text = "FROM first AS a\nFROM second AS b\nCOPY missing.txt /\n"
    assert [s.name for s in plan(text, tmp_path, target="a", seen=seen)] == ["a"]
    assert seen == ["first"]


def test_containerfile_is_a_path_the_text_or_found_in_the_context(tmp_path: Path) -> None:
    from pytest_minicontainer.build import read_containerfile

    with pytest.raises(BuildError, match="no Containerfile or Dockerfile"):
        read_containerfile(None, str(tmp_path))
    (tmp_path / "Dockerfile").write_text("FROM docker\n")
    assert read_containerfile(None, str(tmp_path)) == "FROM docker\n"
    (tmp_path / "Containerfile").write_text("FROM container\n")
    assert read_containerfile(None, str(tmp_path)) == "FROM container\n"
    assert read_containerfile("Dockerfile", str(tmp_path)) == "FROM docker\n"  # relative to the context
    assert read_containerfile(tmp_path / "Dockerfile", "/") == "FROM docker\n"
    assert read_containerfile("FROM text\nRUN x\n", str(tmp_path)) == "FROM text\nRUN x\n"
    assert read_containerfile("FROM host", str(tmp_path)) == "FROM host"
    assert read_containerfile("FROM\thost", str(tmp_path)) == "FROM\thost"
    with pytest.raises(BuildError, match="Containerfile nope does not exist"):
        read_containerfile("nope", str(tmp_path))


def test_buildkit_forms_label_legacy_expose_split_and_volume(tmp_path: Path) -> None:
    """What BuildKit accepts and the builder refused (issue 16): ``LABEL key value`` (the usual
    replacement for MAINTAINER), EXPOSE of a variable holding several ports, VOLUME in both forms."""
    stages = plan("""FROM base
ARG PORTS="80 443/udp"
LABEL maintainer Jane Doe <jane@example.com>
EXPOSE $PORTS 8080
WORKDIR /srv
VOLUME ["/var/lib/db", "data"]
VOLUME logs /tmp/x
""", tmp_path)
    cfg = stages[-1].steps[-1].config
    assert cfg.labels_dict["maintainer"] == "Jane Doe <jane@example.com>"
    assert cfg.exposed_ports == ("443/udp", "80/tcp", "8080/tcp")
    assert cfg.volumes == ("/srv/data", "/srv/logs", "/tmp/x", "/var/lib/db")
    assert [s.kind for s in stages[-1].steps][-2:] == ["VOLUME", "VOLUME"]


def test_onbuild_triggers_run_first_in_the_child_and_are_not_passed_on(tmp_path: Path) -> None:
    """ONBUILD (issue 16): recorded raw in the parent's config ("OnBuild"); a build FROM it runs
    the triggers right after FROM, and its image does not carry them on."""
    parent = plan("FROM base\nENV LEVEL=parent\nONBUILD ENV FROM_TRIGGER=$LEVEL\nONBUILD LABEL via=onbuild\n",
                  tmp_path)[-1].config
    assert parent.onbuild == ("ENV FROM_TRIGGER=$LEVEL", "LABEL via=onbuild")
    assert parent.to_oci()["OnBuild"] == list(parent.onbuild)
    assert ImageConfig.from_oci(parent.to_oci()).onbuild == parent.onbuild
    with_triggers = Image(digest="sha256:" + "c" * 64, config=parent)
    ins, escape = parse("FROM parent\nENV LEVEL=child\n")
    stages = make_plan(ins, escape, build_args={}, target=None, resolve=lambda _ref: with_triggers,
                       context=str(tmp_path), ignore=load_ignore(str(tmp_path)))
    child = stages[-1]
    assert [s.display for s in child.steps] == ["ENV FROM_TRIGGER=$LEVEL", "LABEL via=onbuild", "ENV LEVEL=child"]
    env = child.config.env_dict
    assert env["FROM_TRIGGER"] == "parent" and env["LEVEL"] == "child"  # triggers see the child's state then
    assert child.config.labels_dict["via"] == "onbuild" and child.config.onbuild == ()
    for bad in ("ONBUILD ONBUILD RUN x", "ONBUILD FROM other", "ONBUILD FROB x"):
        with pytest.raises(BuildError, match="ONBUILD"):
            plan(f"FROM base\n{bad}\n", tmp_path)


@pytest.mark.parametrize(("mount", "message"), [
    ("type=nfs", "type=nfs is not supported (cache, bind, tmpfs, secret, ssh)"),
    ("type=ssh,colour=red", "unknown option(s) colour"),
    ("type=bind,from=base,target=/x,colour=red", "unknown option(s) colour"),
    ("type=bind,from=0,target=/x", "from=0 names the stage it is in"),
    ("type=cache,target=/c,sharing=wild", "sharing=wild: not shared, private or locked"),
    ("type=secret", "type=secret needs id="),
    ("type=tmpfs", "type=tmpfs needs target="),
    ("type=cache,target=/c,colour=red", "unknown option(s) colour"),
])
def test_run_mount_options_are_checked(tmp_path: Path, mount: str, message: str) -> None:
    with pytest.raises(BuildError, match=re.escape(message)):
        plan(f"FROM base\nRUN --mount={mount} true\n", tmp_path)


def test_run_mount_defaults_and_cache_key(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("1")
    step = plan("FROM base\nWORKDIR /w\nRUN --mount=type=cache,target=c --mount=type=secret,id=tok "
                "--mount=type=bind,source=src,target=/s true\n", tmp_path)[-1].steps[-1]
    assert [dict(m)["target"] for m in step.mounts] == ["/w/c", "/run/secrets/tok", "/s"]
    assert dict(step.mounts[0])["id"] == "/w/c" and dict(step.mounts[0])["sharing"] == "shared"
    before = step.content
    (tmp_path / "src" / "f").write_text("2")  # what a bind shows is part of the step's key
    assert plan("FROM base\nWORKDIR /w\nRUN --mount=type=cache,target=c --mount=type=secret,id=tok "
                "--mount=type=bind,source=src,target=/s true\n", tmp_path)[-1].steps[-1].content != before


def test_a_stage_over_a_base_without_path_gets_the_default_one(tmp_path: Path) -> None:
    """BuildKit makes sure every stage has a PATH: ``ENV PATH $PATH:/x`` over a base that sets
    none (a rootfs, scratch) means the default and /x, and the image keeps it."""
    def resolve(ref: str) -> Image:
        return Image(digest="sha256:" + "c" * 64, config=ImageConfig(env=(("LANG", "C"),)))

    ins, escape = parse("FROM rootfs\nENV PATH $PATH:/opt/bin\nRUN echo $PATH\n")
    stages = make_plan(ins, escape, build_args={}, target=None, resolve=resolve, context=str(tmp_path),
                       ignore=load_ignore(str(tmp_path)))
    assert stages[0].config.env_dict["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin"
    assert stages[0].config.env_dict["LANG"] == "C"
    with_path = plan("FROM base\nENV PATH $PATH:/x\n", tmp_path)  # BASE sets PATH=/bin: kept as it is
    assert with_path[0].config.env_dict["PATH"] == "/bin:/x"
