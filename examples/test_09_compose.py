"""Compose files: a project's ``compose.yaml`` started natively, a fresh stack for every test.

* ``@pytest.mark.compose(path)`` names the file (or its directory; a relative path starts at
  the ini file's directory, here it is this file's ``stack/``) and the ``compose`` fixture is
  the running stack: ``compose["app"]`` is that service's container, with everything a
  container has (``exec``, ``ports``, files).
* Services start in dependency order; ``depends_on: {db: {condition: service_healthy}}``
  waits for db's healthcheck, ``build:`` builds with the project's builder (once a session),
  ``${VAR:-default}`` interpolates, ``ports`` are published on 127.0.0.1.
* Every test gets a stack of its own (its own network, volumes and containers), so parallel
  tests never meet; ``engine.compose(path).up()`` does the same from Python.
* While a test runs, the next test's stack is already starting (``--minicontainer-ahead``):
  ``stack.start()`` starts what need not wait (db), the next test's setup calls
  ``running.wait()`` for the rest (app, which waits for db's health). Python can do the same.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pytest_minicontainer import Engine
from pytest_minicontainer.compose import RunningStack

STACK = Path(__file__).parent / "stack"


def ask(address: tuple[str, int]) -> str:
    with socket.create_connection(address, timeout=30) as sock:
        return sock.makefile().read().strip()


@pytest.mark.compose(STACK)
def test_the_app_answers_with_what_db_says(compose: RunningStack) -> None:
    assert ask(compose["app"].ports[8080]) == "app: hello from db"


@pytest.mark.compose(STACK, env={"GREETING": "hi", "GREETER": "tester"})
def test_variables_come_from_env(compose: RunningStack) -> None:
    assert ask(compose["app"].ports[8080]) == "tester: hi"


@pytest.mark.compose(STACK, services=["db"])
def test_only_what_the_test_needs(compose: RunningStack) -> None:
    assert set(compose) == {"db"}


def test_from_python(minicontainer: Engine) -> None:
    stack = minicontainer.compose(STACK)
    with stack.up() as one, stack.up() as two:  # two stacks side by side
        assert one["db"].network != two["db"].network
        assert ask(one["app"].ports[8080]) == ask(two["app"].ports[8080]) == "app: hello from db"


def test_start_now_wait_later(minicontainer: Engine) -> None:
    stack = minicontainer.compose(STACK)
    running = stack.start()  # returns at once: db starts, app waits for db to be healthy
    try:
        assert set(running) == {"db"}
        # ... do something else while db boots ...
        running.wait()  # app starts once db is healthy; returns when both pass their healthchecks
        assert ask(running["app"].ports[8080]) == "app: hello from db"
    finally:
        running.down()
