"""Realistic compose projects (tests/data/compose), read into the plan a stack starts from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_minicontainer import ComposeError, HealthCheck, ImageConfig
from pytest_minicontainer.compose import (
    Build,
    ComposeWarning,
    Dependency,
    FileMount,
    HealthcheckOverride,
    Network,
    NetworkAttachment,
    Port,
    Volume,
    VolumeMount,
    find_file,
    load,
)

DATA = Path(__file__).parents[1] / "data" / "compose"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DB_PASSWORD", "TAG", "PYTHON_VERSION", "APP_ENV", "POSTGRES_VERSION", "API_TOKEN", "HOME"):
        monkeypatch.delenv(name, raising=False)


def test_shop(tmp_path: Path) -> None:
    shop = DATA / "shop"
    project = load(shop)
    assert (project.name, project.file, project.directory) == ("shop", shop / "compose.yaml", shop)
    assert list(project.services) == ["db", "cache", "app", "adminer"]
    assert project.networks == {"default": Network("default")}
    assert project.volumes == {"dbdata": Volume("dbdata")}

    db = project["db"]
    assert db.image == "postgres:16-alpine"
    assert db.environment == {"POSTGRES_USER": "shop", "POSTGRES_PASSWORD": "shop-test", "POSTGRES_DB": "shop"}
    assert db.volumes == (VolumeMount("volume", "/var/lib/postgresql/data", "dbdata"),
                          VolumeMount("bind", "/docker-entrypoint-initdb.d/init.sql", str(shop / "db/init.sql"),
                                      read_only=True))
    assert db.healthcheck == HealthcheckOverride(("CMD-SHELL", "pg_isready -U shop -d shop"), 0.5, 3.0, 30, 2.0)
    assert db.networks == (NetworkAttachment("default", ("db",)),)

    cache = project["cache"]
    assert cache.command == ("redis-server", "--save", "", "--appendonly", "no")
    assert cache.healthcheck_for(ImageConfig()) == HealthCheck(("CMD-SHELL", "redis-cli ping"), 0.5, 3.0, 0.0, 30)

    app = project["app"]
    assert app.image == "shop/app:ci"  # TAG from .env (with export)
    assert app.build == Build(shop / "app", args={"PYTHON_VERSION": "3.12", "APP_ENV": "test"})
    assert app.ports == (Port(8000, 8080, "127.0.0.1"),)
    assert app.environment == {"LOG_LEVEL": "debug", "SECRET_KEY": "not-a-secret # really", "WORKERS": "2",
                               "DATABASE_URL": "postgres://shop:shop-test@db:5432/shop",
                               "REDIS_URL": "redis://cache:6379/0"}
    assert app.depends_on == (Dependency("db", "service_healthy"), Dependency("cache", "service_healthy"))
    assert app.stop_grace_period == 3.0
    assert app.healthcheck_for(ImageConfig()) == HealthCheck(("CMD", "wget", "-qO-", "http://localhost:8000/health"),
                                                             interval=1.0)

    assert [s.name for s in project.plan()] == ["db", "cache", "app"]
    assert [s.name for s in project.plan(["adminer"])] == ["db", "adminer"]
    assert [s.name for s in load(shop, profiles=["debug"]).plan()] == ["db", "cache", "app", "adminer"]


def test_shop_with_the_caller_s_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAG", "from-process")
    monkeypatch.setenv("APP_ENV", "")  # set but empty: ${APP_ENV-test} keeps it empty
    project = load(DATA / "shop", project="shop-ci", env={"PYTHON_VERSION": "3.13", "DB_PASSWORD": "given"})
    assert project.name == "shop-ci"
    assert project["app"].image == "shop/app:from-process"
    assert project["app"].build is not None
    assert project["app"].build.args == {"PYTHON_VERSION": "3.13", "APP_ENV": ""}
    assert project["db"].environment["POSTGRES_PASSWORD"] == "given"


def test_shop_without_its_password(tmp_path: Path) -> None:
    copy = shutil.copytree(DATA / "shop", tmp_path / "shop")
    (copy / ".env").unlink()
    with pytest.raises(ComposeError) as info:
        load(copy)
    assert (info.value.service, info.value.key, info.value.line) == ("db", "environment.POSTGRES_PASSWORD", 15)
    assert "required variable DB_PASSWORD is missing a value: set DB_PASSWORD (the .env file has a test one)" in str(
        info.value)


def test_legacy(monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = DATA / "legacy"
    monkeypatch.setenv("HOME", "/home/tester")
    with pytest.warns(ComposeWarning) as record:
        project = load(legacy)
    assert sorted(str(w.message).split(":")[0] for w in record) == ["services.api.tty", "services.web.restart"]
    assert project.name == "legacy"
    assert project.file == legacy / "docker-compose.yml"
    web, api = project["web"], project["api"]
    assert (web.container_name, web.restart, web.ports) == ("legacy_web", "always", (Port(80), Port(443, 443)))
    assert web.networks == (NetworkAttachment("default", ("web", "legacy_web")),)
    assert api.image == f"rootfs:{legacy}/rootfs"
    assert (api.command, api.working_dir, api.user, api.stop_signal) == (
        ("/bin/sh", "-c", "httpd -f -p 9000"), "/srv", "1000:1000", "SIGINT")
    assert api.environment == {"DEBUG": "false", "HOME": "/home/tester"}
    assert [s.name for s in project.plan()] == ["api", "web"]


def test_tiers() -> None:
    tiers = DATA / "tiers"
    project = load(tiers, env={"API_TOKEN": "t0k3n"})
    assert project.name == "tiers"
    assert project.networks == {"front": Network("front"), "back": Network("back", internal=True)}
    proxy, api, migrate, db = (project[n] for n in ("proxy", "api", "migrate", "db"))
    assert proxy.files == (FileMount("config", "proxy_conf", "/etc/nginx/conf.d/default.conf",
                                     tiers / "conf/proxy.conf"),)
    assert api.image == f"oci:{tiers}/images/api:1.0"
    assert api.networks == (NetworkAttachment("front", ("api", "backend")), NetworkAttachment("back", ("api",)))
    assert api.files == (FileMount("secret", "api_token", "/run/secrets/api_token", content="t0k3n"),)
    assert api.volumes == (VolumeMount("tmpfs", "/tmp"),)
    assert migrate.build == Build(tiers / "migrations", dockerfile_inline="FROM host\nCOPY . /migrations\n")
    assert migrate.command == ("migrate", "--all")
    assert db.networks == (NetworkAttachment("back", ("db", "database", "pg")),)
    assert db.volumes == (VolumeMount("volume", "/var/lib/postgresql/data", "pgdata", nocopy=True),)

    with pytest.warns(ComposeWarning, match="optional dependency 'search' is not started"):
        assert [s.name for s in project.plan()] == ["migrate", "api", "proxy", "db"]
    searching = load(tiers, env={"API_TOKEN": "x"}, profiles=["search"])
    assert [s.name for s in searching.plan(["api"])] == ["migrate", "search", "api"]
    report = load(tiers, env={"API_TOKEN": "x"}).plan(["report"])[0]
    assert (report.network_mode, report.networks) == ("none", ())
    assert report.command_for(ImageConfig(entrypoint=("x",), cmd=("y",))) == ("/bin/sh", "-c",
                                                                              "cat /conf/* > /dev/null")


def test_tiers_needs_its_secret() -> None:
    with pytest.raises(ComposeError, match=r"secrets\.api_token\.environment: variable API_TOKEN is not set"):
        load(DATA / "tiers")


def test_file_discovery(tmp_path: Path) -> None:
    for name in ("docker-compose.yaml", "compose.yml"):
        (tmp_path / name).write_text("services: {}\n")
    with pytest.warns(ComposeWarning, match="holds several compose files .*compose.yml is read"):
        assert find_file(tmp_path) == tmp_path / "compose.yml"
    (tmp_path / "compose.override.yaml").write_text("services: {}\n")
    with pytest.warns(ComposeWarning) as record:
        find_file(tmp_path)
    assert any("compose.override.yaml is not merged" in str(w.message) for w in record)
    assert find_file(tmp_path / "docker-compose.yaml") == tmp_path / "docker-compose.yaml"  # named: no warning
    with pytest.raises(ComposeError, match=r"no compose file in .* \(looked for compose\.yaml, compose\.yml"):
        find_file(DATA)
    with pytest.raises(ComposeError, match="does not exist"):
        find_file(tmp_path / "nope.yaml")
