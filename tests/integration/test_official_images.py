"""The official postgres, redis and mariadb images' Dockerfiles, built and run as users have them (issue 16).

``tests/data/official/*/Containerfile`` repeat the official Dockerfiles' steps that need no
network (locale generation, ``dpkg-divert`` of the sample config, ``install --owner``,
``ENV PGDATA``, ``VOLUME``, ``COPY docker-entrypoint.sh``, ``STOPSIGNAL``, ``ENTRYPOINT``,
``CMD``) over a Debian rootfs that holds what the others download (postgresql-15, redis,
gosu, locales from Debian's packages, built once by mmdebstrap).  The entrypoints are written
for these tests and do what the official ones do: initdb and the init scripts on an empty
data directory, ``gosu`` down to the service's user.  Then the prepared-state pattern: seed,
stop, commit, and clones that each start from the seed, with real clients (psql over TCP with
a password, redis's protocol from the host).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minicontainer import Container, Engine, Image, Mount
from tests.debian import debian_rootfs
from tests.integration.test_services import redis_call

DATA = Path(__file__).resolve().parents[1] / "data" / "official"
# What the official images download, from Debian's packages; what they leave out, left out
# (documentation; postgres's JIT library, which a test never uses; the cluster the Debian
# package makes, which the official image also turns off).
MMDEBSTRAP = [
    "mmdebstrap", "--variant=essential", "--include=postgresql-15,redis-server,gosu,locales,bash",
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/lib/*/libLLVM*",
    "--dpkgopt=path-exclude=/usr/lib/*/libz3*", "--dpkgopt=path-exclude=/usr/lib/postgresql/15/lib/bitcode/*",
    '--customize-hook=rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"',
    "--format=tar", "bookworm",
]
MMDEBSTRAP_MARIADB = [
    "mmdebstrap", "--variant=essential", "--include=mariadb-server,gosu,bash",
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    '--customize-hook=rm -rf "$1"/var/lib/mysql/*',  # the package's own database: the image makes its own
    "--format=tar", "bookworm",
]


def _need_service_users(engine: Engine) -> None:
    if engine.runtime.idmap.max_uid < 1000:
        pytest.skip("the official images run their servers as their own users (postgres, redis, mysql), which "
                    "one mapped id cannot hold; fix: sudo usermod --add-subuids 100000-165535 --add-subgids "
                    "100000-165535 $USER")


@pytest.fixture(scope="module")
def base(engine: Engine) -> str:
    _need_service_users(engine)
    tar = debian_rootfs("official", MMDEBSTRAP, "MINICONTAINER_TEST_OFFICIAL_ROOTFS")
    engine.image(f"rootfs:{tar}")  # unpacked once for the module
    return f"rootfs:{tar}"


@pytest.fixture(scope="module")
def mariadb_base(engine: Engine) -> str:
    _need_service_users(engine)
    return f"rootfs:{debian_rootfs('mariadb', MMDEBSTRAP_MARIADB, 'MINICONTAINER_TEST_MARIADB_ROOTFS')}"


def _context(name: str, tmp_path: Path) -> Path:
    ctx = tmp_path / name
    shutil.copytree(DATA / name, ctx)
    return ctx


def _ready(c: Container, argv: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while c.exec(argv).returncode != 0:
        if not c.running or time.monotonic() > deadline:
            pytest.fail(f"{argv} never answered; the container's log:\n{c.logs()}")
        time.sleep(0.1)


# -- postgres ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres(engine: Engine, base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    image = engine.build(context=_context("postgres", tmp_path_factory.mktemp("pg")), build_args={"BASE": base},
                         network="none")
    yield image
    engine.remove(image)


PSQL_TCP = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tA", "-c"]


def test_the_postgres_dockerfile_builds_with_the_official_config(postgres: Image) -> None:
    cfg = postgres.config
    assert cfg.volumes == ("/var/lib/postgresql/data",)
    assert cfg.entrypoint == ("docker-entrypoint.sh",) and cfg.cmd == ("postgres",)
    assert cfg.stop_signal == "SIGINT" and cfg.exposed_ports == ("5432/tcp",)
    env = cfg.env_dict
    assert env["PGDATA"] == "/var/lib/postgresql/data" and env["LANG"] == "en_US.utf8"
    assert env["PATH"].endswith(":/usr/lib/postgresql/15/bin")


def test_postgres_seeded_once_then_cloned_per_test(engine: Engine, postgres: Image, tmp_path: Path) -> None:
    init = tmp_path / "initdb.d"
    init.mkdir()
    (init / "schema.sql").write_text("CREATE TABLE seen (who text);\nINSERT INTO seen VALUES ('seed');\n")
    with engine.run(postgres, env={"POSTGRES_PASSWORD": "s3cret"},
                    mounts=[Mount(init, "/docker-entrypoint-initdb.d", readonly=True)]) as db:
        db.wait_for_port(5432, timeout=60)
        assert "PostgreSQL init process complete" in db.logs()
        query = db.exec([*PSQL_TCP, "SELECT who FROM seen"], env={"PGPASSWORD": "s3cret"})
        assert query.stdout == "seed\n", query.stderr
        refused = db.exec([*PSQL_TCP, "SELECT 1"], env={"PGPASSWORD": "wrong"})
        assert refused.returncode != 0 and "password authentication failed" in refused.stderr
        owner = db.exec(["stat", "-c", "%U %a", "/var/lib/postgresql/data"]).stdout
        assert owner == "postgres 700\n"
        assert db.stop(timeout=30) == 0  # SIGINT (the image's STOPSIGNAL): a fast, clean shutdown
        seeded = db.commit()
    try:
        with engine.run(seeded) as a, engine.run(seeded) as b:  # no password now: PGDATA is initialised
            for c in (a, b):
                c.wait_for_port(5432, timeout=60)
                assert "init process complete" not in c.logs()  # the seed's data, not a new initdb
            a.exec([*PSQL_TCP, "INSERT INTO seen VALUES ('a')"], env={"PGPASSWORD": "s3cret"}, check=True)
            read = [*PSQL_TCP, "SELECT string_agg(who, ',' ORDER BY who) FROM seen"]
            assert a.exec(read, env={"PGPASSWORD": "s3cret"}).stdout == "a,seed\n"
            assert b.exec(read, env={"PGPASSWORD": "s3cret"}).stdout == "seed\n"
    finally:
        engine.remove(seeded)


# -- redis ------------------------------------------------------------------------------------
def test_redis_dockerfile_seeded_then_cloned(engine: Engine, base: str, tmp_path: Path) -> None:
    image = engine.build(context=_context("redis", tmp_path), build_args={"BASE": base}, network="none")
    try:
        assert image.config.volumes == ("/data",) and image.config.workdir == "/data"
        with engine.run(image) as server:
            server.wait_for_port(6379, timeout=30)
            with server.connect(6379) as s:
                assert redis_call(s, "SET", "seeded", "yes") == b"+OK\r\n"
                assert redis_call(s, "SAVE") == b"+OK\r\n"
            # written by redis-server as redis (gosu), private to it (the entrypoint's umask 0077)
            assert server.exec(["stat", "-c", "%U %a", "/data/dump.rdb"]).stdout == "redis 600\n"
            assert server.stop(timeout=30) == 0
            seeded = server.commit()
        with engine.run(seeded) as a, engine.run(seeded) as b:
            a.wait_for_port(6379, timeout=30)
            b.wait_for_port(6379, timeout=30)
            with a.connect(6379) as sa, b.connect(6379) as sb:
                assert redis_call(sa, "GET", "seeded") == b"$3\r\nyes\r\n"
                assert redis_call(sa, "SET", "only", "a") == b"+OK\r\n"
                assert redis_call(sb, "GET", "only") == b"$-1\r\n"
                assert redis_call(sb, "GET", "seeded") == b"$3\r\nyes\r\n"
        engine.remove(seeded)
    finally:
        engine.remove(image)


def test_a_build_step_making_files_private_to_the_service_user(engine: Engine, base: str, tmp_path: Path) -> None:
    """What postgresql's postinst does on a plain ``apt-get install`` (the official image turns it
    off): ``pg_createcluster`` makes a cluster whose files belong to postgres and are private
    to it (pg_ident.conf 0640, the data directory 0700).  Rootless, this process cannot read
    them; the layer is hashed and stored where the ids are mapped (issue 16)."""
    image = engine.build(f"FROM {base}\nRUN pg_createcluster 15 main\n", tmp_path, network="none")
    try:
        with engine.run(image, command=()) as c:
            out = c.exec(["stat", "-c", "%U %a %n", "/etc/postgresql/15/main/pg_ident.conf",
                          "/var/lib/postgresql/15/main"], check=True).stdout
            assert out.splitlines() == ["postgres 640 /etc/postgresql/15/main/pg_ident.conf",
                                        "postgres 700 /var/lib/postgresql/15/main"]
            started = c.exec(["pg_ctlcluster", "15", "main", "start"])
            assert started.returncode == 0, started.stderr
            assert c.exec(["gosu", "postgres", "psql", "-tAc", "SELECT 6 * 7"], check=True).stdout == "42\n"
    finally:
        engine.remove(image)


# -- mariadb ------------------------------------------------------------------------------------
def test_mariadb_dockerfile_seeded_then_cloned(engine: Engine, mariadb_base: str, tmp_path: Path) -> None:
    image = engine.build(context=_context("mariadb", tmp_path), build_args={"BASE": mariadb_base},
                         network="none")
    init = tmp_path / "initdb.d"
    init.mkdir()
    (init / "seed.sql").write_text("CREATE DATABASE app;\nCREATE TABLE app.seen (who VARCHAR(20));\n"
                                   "INSERT INTO app.seen VALUES ('seed');\n")
    tcp = ["mariadb", "-h", "127.0.0.1", "-uroot", "-ps3cret", "-N", "-B", "-e"]
    seeded = None
    try:
        assert image.config.volumes == ("/var/lib/mysql",) and image.config.cmd == ("mariadbd",)
        with engine.run(image, env={"MARIADB_ROOT_PASSWORD": "s3cret"},
                        mounts=[Mount(init, "/docker-entrypoint-initdb.d", readonly=True)]) as db:
            db.wait_for_port(3306, timeout=120)
            assert "init process done" in db.logs()
            assert db.exec([*tcp, "SELECT who FROM app.seen"]).stdout == "seed\n"
            refused = db.exec(["mariadb", "-h", "127.0.0.1", "-uroot", "-pwrong", "-e", "SELECT 1"])
            assert refused.returncode != 0 and "Access denied" in refused.stderr
            assert db.stop(timeout=60) == 0
            seeded = db.commit()
        with engine.run(seeded) as a, engine.run(seeded) as b:
            a.wait_for_port(3306, timeout=120)
            b.wait_for_port(3306, timeout=120)
            a.exec([*tcp, "INSERT INTO app.seen VALUES ('a')"], check=True)
            query = [*tcp, "SELECT GROUP_CONCAT(who ORDER BY who) FROM app.seen"]
            assert a.exec(query).stdout == "a,seed\n"
            assert b.exec(query).stdout == "seed\n"
    finally:
        if seeded is not None:
            engine.remove(seeded)
        engine.remove(image)
