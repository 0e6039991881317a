"""Compose files started natively (issue 18): ``engine.compose(path).up()`` gives one container
per service, in dependency order, on the stack's own network, with healthchecks, builds,
interpolated arguments, ports and volumes; every ``up()`` is a stack of its own."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from pytest_minicontainer import ComposeError, Engine

COMPOSE = """
name: shop
services:
  db:
    image: "rootfs:${ROOTFS}"
    command: ["nc", "-ll", "-p", "5432", "-e", "sh", "-c", "echo db says ${GREETING:-hello}"]
    healthcheck:
      test: ["CMD-SHELL", "nc -w 1 127.0.0.1 5432 </dev/null | grep -q says"]
      interval: 1s
      retries: 30
    volumes:
      - data:/var/lib/db
  app:
    build:
      context: ./app
      args:
        BASE: "rootfs:${ROOTFS}"
        MESSAGE: "${MESSAGE:-built by compose}"
    depends_on:
      db:
        condition: service_healthy
    environment:
      DB_HOST: db
    command: ["sh", "-c", "cat /message; exec nc -ll -p 8080 -e sh -c 'nc -w 2 $$DB_HOST 5432 </dev/null'"]
    ports:
      - "8080"
    networks:
      default:
        aliases: [shop-app]
  migrate:
    image: "rootfs:${ROOTFS}"
    command: ["sh", "-c", "echo migrated > /var/lib/db/schema"]
    volumes:
      - data:/var/lib/db
  worker:
    image: "rootfs:${ROOTFS}"
    depends_on:
      migrate: {condition: service_completed_successfully}
    command: ["sleep", "600"]
volumes:
  data: {}
"""

CONTAINERFILE = """
ARG BASE
FROM ${BASE}
ARG MESSAGE
RUN echo "$MESSAGE" > /message
"""


def write_project(root: Path, compose: str = COMPOSE) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "Containerfile").write_text(textwrap.dedent(CONTAINERFILE).lstrip())
    (root / "compose.yaml").write_text(textwrap.dedent(compose).lstrip())
    return root


def fetch(address: tuple[str, int]) -> str:
    with socket.create_connection(address, timeout=30) as sock:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.decode().strip()


def test_a_stack_starts_in_order_with_health_builds_ports_and_volumes(engine: Engine, busybox_rootfs: Path,
                                                                      tmp_path: Path) -> None:
    root = write_project(tmp_path / "shop")
    stack = engine.compose(root, env={"ROOTFS": str(busybox_rootfs)})
    with stack.up() as running:
        assert set(running) == {"db", "app", "migrate", "worker"}
        app, db = running["app"], running["db"]
        app.wait_for_log("built by compose")  # the build arg's default, interpolated (app has no healthcheck)
        assert app.logs().startswith("built by compose")
        # the app reaches db by its service name on the stack's network
        assert app.exec("nc -w 2 db 5432 </dev/null", timeout=30).stdout.strip() == "db says hello"
        # and its port is published on the host: each connection asks db through the app
        app.wait_for_port(8080)  # it has no healthcheck: up() did not wait for it to listen
        assert fetch(app.ports[8080]) == "db says hello"
        assert running["migrate"].exit_status == 0
        assert db.read_text("/var/lib/db/schema") == "migrated\n"  # the named volume, shared in the stack
        assert "shop-app" in db.read_text("/etc/hosts").split()
        assert app.network == db.network and app.network.startswith("shop-")
    stack.engine.remove(stack.image(stack.project["app"]))


def test_every_up_is_a_stack_of_its_own(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    root = write_project(tmp_path / "shop")
    stack = engine.compose(root, env={"ROOTFS": str(busybox_rootfs), "GREETING": "hi"})
    with stack.up(["db"]) as one, stack.up(["db"]) as two:
        assert set(one) == {"db"} and set(two) == {"db"}
        assert one["db"].network != two["db"].network
        one["db"].write_text("/var/lib/db/mine", "one\n")
        assert not two["db"].exists("/var/lib/db/mine")
        assert one["db"].exec("nc -w 2 db 5432 </dev/null", timeout=30).stdout.strip() == "db says hi"


def test_start_holds_back_only_what_waits_and_wait_finishes(engine: Engine, busybox_rootfs: Path,
                                                            tmp_path: Path) -> None:
    """stack.start() starts what need not wait (db, migrate) without waiting for anything;
    wait() starts app once db is healthy and worker once migrate ended, as up() does."""
    root = write_project(tmp_path / "shop")
    stack = engine.compose(root, env={"ROOTFS": str(busybox_rootfs)})
    stack.image(stack.project["app"])  # built beforehand: start() never builds while holding back
    running = stack.start()
    try:
        assert set(running) == {"db", "migrate"}  # app waits for db's health, worker for migrate
        assert running.wait() is running
        assert set(running) == {"db", "migrate", "app", "worker"}
        assert running["migrate"].exit_status == 0
        assert running["app"].exec("nc -w 2 db 5432 </dev/null", timeout=30).stdout.strip() == "db says hello"
        assert running.wait() is running  # once ready, waiting again does nothing
        assert set(running) == {"db", "migrate", "app", "worker"}
    finally:
        running.down()
    assert not any(c in engine.containers for c in running.values())
    stack.engine.remove(stack.image(stack.project["app"]))


@pytest.mark.parametrize(("compose", "message"), [
    ("services:\n  a:\n    image: 'rootfs:${ROOTFS}'\n    command: [sleep, '60']\n"
     "  b:\n    image: 'rootfs:${ROOTFS}'\n    depends_on:\n      a: {condition: service_healthy}\n",
     "services.b.depends_on: waits for 'a' to be healthy, but 'a' has no healthcheck"),
    ("services:\n  a:\n    image: 'rootfs:${ROOTFS}'\n    command: [sh, -c, 'exit 3']\n"
     "  b:\n    image: 'rootfs:${ROOTFS}'\n    depends_on:\n      a: {condition: service_completed_successfully}\n",
     "services.b.depends_on: waits for 'a' to complete successfully, but it exited with status 3"),
    ("services:\n  a:\n    image: 'rootfs:/does/not/exist'\n", "services.a: its image could not be made"),
])
def test_a_stack_that_cannot_start_says_which_service_and_why(engine: Engine, busybox_rootfs: Path, tmp_path: Path,
                                                              compose: str, message: str) -> None:
    (tmp_path / "compose.yaml").write_text(compose)
    stack = engine.compose(tmp_path, env={"ROOTFS": str(busybox_rootfs)})
    before = set(engine.containers)
    with pytest.raises(ComposeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stack.up()
    assert set(engine.containers) == before  # what had started is removed


def test_a_seeded_stack_committed_and_cloned(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """stack.commit(): every service's files as they are, cloned by each later up()."""
    root = write_project(tmp_path / "shop")
    stack = engine.compose(root, env={"ROOTFS": str(busybox_rootfs)})
    with stack.up(["db"]) as seeding:
        seeding["db"].write_text("/srv/seed.sql", "INSERT 1\n")
        prepared = seeding.commit()
        assert not seeding["db"].running  # stopped first, for consistent files
    with prepared.up(["db"]) as one, prepared.up(["db"]) as two:
        assert one["db"].read_text("/srv/seed.sql") == two["db"].read_text("/srv/seed.sql") == "INSERT 1\n"
        one["db"].write_text("/srv/seed.sql", "changed\n")
        assert two["db"].read_text("/srv/seed.sql") == "INSERT 1\n"
        assert one["db"].exec("nc -w 2 db 5432 </dev/null", timeout=30).stdout.strip() == "db says hello"
    engine.remove(prepared.image(prepared.project["db"]))


def test_the_cli_reads_starts_shows_and_stops_a_stack(busybox_rootfs: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = write_project(tmp_path / "shop")
    env = {**os.environ, "ROOTFS": str(busybox_rootfs)}
    mc = [sys.executable, "-m", "pytest_minicontainer", "--store", str(tmp_path / "store"), "compose", "-f", str(root)]
    config = subprocess.run([*mc, "config"], capture_output=True, text=True, env=env, timeout=60)
    assert config.returncode == 0, config.stderr
    assert "name: shop" in config.stdout
    order = [line.split(":")[0].strip() for line in config.stdout.splitlines() if line.startswith("  ") and
             not line.startswith("    ")]
    assert order.index("db") < order.index("app") and order.index("migrate") < order.index("worker")
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - closed below, whatever happens
    up = subprocess.Popen([*mc, "up", "app"], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        assert up.stdout is not None
        said = [up.stdout.readline() for _ in range(3)]
        assert said[-1].startswith("up: project shop"), [*said, (tmp_path / "up.log").read_text()]
        ps = subprocess.run([*mc, "ps"], capture_output=True, text=True, env=env, timeout=60)
        assert ps.returncode == 0, ps.stderr
        assert [line.split()[0] for line in ps.stdout.splitlines()] == ["SERVICE", "db", "app"]
        assert "running" in ps.stdout and "8080 -> 127.0.0.1:" in ps.stdout
        logs = subprocess.run([*mc, "logs", "app"], capture_output=True, text=True, env=env, timeout=60)
        assert "app | built by compose" in logs.stdout and "db |" not in logs.stdout
        down = subprocess.run([*mc, "down"], capture_output=True, text=True, env=env, timeout=90)
        assert down.returncode == 0 and "down: project shop removed" in down.stdout, down.stderr
        assert up.wait(timeout=30) == 0
        gone = subprocess.run([*mc, "ps"], capture_output=True, text=True, env=env, timeout=60)
        assert gone.returncode == 1 and "no stack of project 'shop' is up" in gone.stderr
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        assert up.stdout is not None
        up.stdout.close()
        log.close()


def test_a_service_on_two_networks(engine: Engine, busybox_rootfs: Path, tmp_path: Path) -> None:
    """web sits on front and back (eth0, eth1): the browser reaches web but not db, web reaches db."""
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        services:
          db:
            image: "rootfs:${ROOTFS}"
            command: ["nc", "-ll", "-p", "5432", "-e", "echo", "db"]
            networks: [back]
          web:
            image: "rootfs:${ROOTFS}"
            command: ["nc", "-ll", "-p", "80", "-e", "echo", "web"]
            networks:
              front: {}
              back: {aliases: [api]}
          browser:
            image: "rootfs:${ROOTFS}"
            command: ["sleep", "600"]
            networks: [front]
        networks:
          front: {}
          back: {}
    """).lstrip())
    with engine.compose(tmp_path, env={"ROOTFS": str(busybox_rootfs)}).up() as running:
        web, db, browser = running["web"], running["db"], running["browser"]
        db.wait_for_port(5432)
        web.wait_for_port(80)
        assert len(web.ips) == 2 and "eth1" in web.exec("ip -o link").stdout
        assert web.exec("nc -w 2 db 5432 </dev/null", timeout=30).stdout.strip() == "db"
        assert db.exec("nc -w 2 api 80 </dev/null", timeout=30).stdout.strip() == "web"
        assert browser.exec("nc -w 2 web 80 </dev/null", timeout=30).stdout.strip() == "web"
        assert browser.exec("nc -w 2 db 5432 </dev/null; true", timeout=30).stdout.strip() == ""
