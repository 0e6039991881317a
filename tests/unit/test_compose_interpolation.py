"""Interpolation of compose files as the Compose Specification and compose-go define it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_minicontainer import ComposeError
from pytest_minicontainer.compose import ComposeWarning, load
from pytest_minicontainer.compose._interpolate import InterpolationError, MissingVariable, interpolate

ENV = {"A": "alpha", "EMPTY": "", "B": "beta", "NESTED": "${A}"}


@pytest.mark.parametrize(("text", "expected"), [
    ("$A", "alpha"),
    ("${A}", "alpha"),
    ("pre-${A}-post", "pre-alpha-post"),
    ("$A.txt", "alpha.txt"),
    ("${A}${B}", "alphabeta"),
    ("$A$B", "alphabeta"),
    ("$a", ""),  # names are case sensitive
    ("${MISSING:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${MISSING-dflt}", "dflt"),
    ("${A:-dflt}", "alpha"),
    ("${A-dflt}", "alpha"),
    ("${MISSING:-}", ""),
    ("${MISSING:-a b:c}", "a b:c"),
    ("${MISSING:-a-b}", "a-b"),
    ("${A:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${MISSING+alt}", ""),
    ("${MISSING:+alt}", ""),
    ("${MISSING:-${A}}", "alpha"),
    ("${MISSING:-${ALSO_MISSING:-deep}}", "deep"),
    ("${MISSING:-$A}", "alpha"),
    ("${A:-${MISSING:?not evaluated}}", "alpha"),  # a default is only interpolated when used
    ("${MISSING:-x}${A}", "xalpha"),
    ("{${A}}", "{alpha}"),
    ("$$", "$"),
    ("$$A", "$A"),
    ("$${A}", "${A}"),
    ("${MISSING:-$$}", "$"),
    ("cost: 5$", "cost: 5$"),
    ("$ 1", "$ 1"),
    ("$1", "$1"),
    ("a$-b", "a$-b"),
    ("${NESTED}", "${A}"),  # values are not interpolated again
    ("'$A' \"$A\" \\$A", "'alpha' \"alpha\" \\alpha"),  # quotes and backslashes are not special
])
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, ENV.get) == expected


def test_unset_names_are_collected_once_and_only_without_default() -> None:
    unset: set[str] = set()
    assert interpolate("$X ${X} ${Y:-d} ${Z-d} ${W:+r} $A", ENV.get, unset) == "  d d  alpha"
    assert unset == {"X"}


@pytest.mark.parametrize(("text", "variable", "reason"), [
    ("${MISSING:?must be set}", "MISSING", "must be set"),
    ("${EMPTY:?must not be empty}", "EMPTY", "must not be empty"),
    ("${MISSING?}", "MISSING", ""),
    ("${MISSING?$A is needed}", "MISSING", "alpha is needed"),
])
def test_required_variables(text: str, variable: str, reason: str) -> None:
    with pytest.raises(MissingVariable) as info:
        interpolate(text, ENV.get)
    assert (info.value.variable, info.value.reason) == (variable, reason)
    assert variable in str(info.value)


def test_required_variable_that_is_set_or_empty_without_colon() -> None:
    assert interpolate("${A:?x}", ENV.get) == "alpha"
    assert interpolate("${EMPTY?x}", ENV.get) == ""


@pytest.mark.parametrize("text", ["${", "${A", "${}", "${ A}", "${1A}", "${A/x/y}", "${A#x}", "${A:x}"])
def test_invalid_forms(text: str) -> None:
    with pytest.raises(InterpolationError):
        interpolate(text, ENV.get)


def write(tmp_path: Path, text: str, dotenv: str | None = None) -> Path:
    (tmp_path / "compose.yaml").write_text(text)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return tmp_path


def test_lookup_order_env_then_process_then_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    environment: [A=$A, B=$B, C=$C]\n",
          dotenv="A=from-dotenv\nB=from-dotenv\nC=from-dotenv\n")
    monkeypatch.setenv("A", "from-process")
    monkeypatch.setenv("B", "from-process")
    env = load(tmp_path, env={"A": "from-env"}).services["s"].environment
    assert env == {"A": "from-env", "B": "from-process", "C": "from-dotenv"}


def test_dotenv_interpolates_with_env_and_process_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    environment: [URL=$URL]\n",
          dotenv="HOST=dotenv-host\nURL=http://${HOST}:${PORT:-80}/\n")
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert load(tmp_path).services["s"].environment["URL"] == "http://dotenv-host:80/"
    assert load(tmp_path, env={"HOST": "given"}).services["s"].environment["URL"] == "http://given:80/"


def test_missing_required_variable_names_variable_service_and_key(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  db:\n    image: postgres\n    environment:\n"
                    "      POSTGRES_PASSWORD: ${DB_PASSWORD:?put it in .env}\n")
    with pytest.raises(ComposeError) as info:
        load(tmp_path)
    err = info.value
    assert (err.service, err.key, err.line) == ("db", "environment.POSTGRES_PASSWORD", 5)
    assert "required variable DB_PASSWORD is missing a value: put it in .env" in str(err)
    assert str(err).startswith(f"{tmp_path / 'compose.yaml'}:5: services.db.environment.POSTGRES_PASSWORD: ")


def test_unset_variable_warns_once_per_variable_with_its_first_key(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x:${TAG}\n    command: echo ${TAG} ${OTHER:-ok}\n")
    with pytest.warns(ComposeWarning) as record:
        project = load(tmp_path)
    assert [str(w.message) for w in record] == [
        "services.s.image: variable TAG is not set: it is replaced by an empty string (give it a value in env=, "
        "the environment or .env, or a default: ${TAG:-...})"]
    assert (record[0].filename, record[0].lineno) == (str(tmp_path / "compose.yaml"), 3)
    assert project.services["s"].image == "x:"
    assert project.services["s"].command == ("echo", "ok")


def test_keys_are_not_interpolated_values_are(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    labels:\n      $$KEY: v\n      ${A}: $A\n"
                    "    environment: [\"${A}_NAME=1\"]\n")
    service = load(tmp_path, env={"A": "a"}).services["s"]
    assert service.labels == {"$$KEY": "v", "${A}": "a"}
    assert service.environment == {"a_NAME": "1"}


def test_dollar_escape_reaches_the_container(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    command: sh -c 'echo $$HOME'\n")
    assert load(tmp_path).services["s"].command == ("sh", "-c", "echo $HOME")


def test_interpolated_values_are_cast_where_a_type_is_expected(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: x\n    ports: ['${PORT:-8080}']\n    healthcheck:\n"
                    "      test: \"true\"\n      retries: ${RETRIES:-5}\n      interval: ${INTERVAL:-2s}\n"
                    "      disable: ${OFF:-false}\n")
    service = load(tmp_path).services["s"]
    assert [p.target for p in service.ports] == [8080]
    assert service.healthcheck is not None
    assert (service.healthcheck.retries, service.healthcheck.interval, service.healthcheck.disable) == (5, 2.0, False)


def test_invalid_interpolation_is_an_error_at_the_key(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  s:\n    image: ${IMAGE\n")
    with pytest.raises(ComposeError, match=r"services\.s\.image: invalid interpolation .*no closing brace"):
        load(tmp_path)


def test_project_name_is_available_for_interpolation(tmp_path: Path) -> None:
    write(tmp_path, "name: ${STACK:-demo}\nservices:\n  s:\n    image: x\n"
                    "    environment: ['P=${COMPOSE_PROJECT_NAME}']\n")
    project = load(tmp_path)
    assert project.name == "demo"
    assert project.services["s"].environment == {"P": "demo"}
    assert load(tmp_path, env={"STACK": "Other"}).services["s"].environment == {"P": "other"}
    assert load(tmp_path, project="given").services["s"].environment == {"P": "given"}


def test_name_is_interpolated_once(tmp_path: Path) -> None:
    write(tmp_path, "name: a$$b\nservices: {}\n")
    assert load(tmp_path, env={"b": "x"}).name == "ab"  # "a$b" normalized, not "ax"


@pytest.mark.parametrize(("given", "message"), [
    ({"project": "My App"}, "invalid project name 'My App' (project=): use only lowercase letters, digits, '-' and "
                            "'_', starting with a letter or a digit, e.g. 'myapp'"),
    ({"env": {"COMPOSE_PROJECT_NAME": "-x"}}, "invalid project name '-x' (COMPOSE_PROJECT_NAME)"),
])
def test_invalid_explicit_project_names(tmp_path: Path, given: dict[str, object], message: str) -> None:
    write(tmp_path, "services: {}\n")
    with pytest.raises(ComposeError) as info:
        load(tmp_path, **given)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(("directory", "name", "expected"), [
    ("My_Project.v2", None, "my_projectv2"),
    ("__x", None, "x"),
    ("app", "Shop App!", "shopapp"),
    ("app", "", "app"),
    ("app", "___", "app"),  # normalized to nothing: the directory's name
])
def test_project_name_normalization(tmp_path: Path, directory: str, name: str | None, expected: str) -> None:
    root = tmp_path / directory
    root.mkdir()
    write(root, (f"name: '{name}'\n" if name is not None else "") + "services: {}\n")
    assert load(root).name == expected


def test_project_name_from_the_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "name: file\nservices: {}\n", dotenv="COMPOSE_PROJECT_NAME=dotenv\n")
    assert load(tmp_path).name == "dotenv"
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "process")
    assert load(tmp_path).name == "process"
    assert load(tmp_path, project="given").name == "given"


def test_a_directory_without_a_usable_name(tmp_path: Path) -> None:
    root = tmp_path / "___"
    root.mkdir()
    write(root, "services: {}\n")
    with pytest.raises(ComposeError, match="give name: in the file or project="):
        load(root)
    assert load(root, project="ok").name == "ok"


def test_env_must_hold_strings(tmp_path: Path) -> None:
    write(tmp_path, "services: {}\n")
    with pytest.raises(TypeError, match="env must map names to strings"):
        load(tmp_path, env={"A": 1})  # type: ignore[dict-item]
