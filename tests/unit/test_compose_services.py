"""A service's keys read into the model: syntaxes, resolution and the errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_minicontainer import HealthCheck, ImageConfig
from pytest_minicontainer.compose import (
    Build,
    ComposeWarning,
    Dependency,
    FileMount,
    HealthcheckOverride,
    NetworkAttachment,
    Service,
)

from .compose_helpers import error, service


@pytest.mark.parametrize(("value", "expected"), [
    ("echo hi", ("echo", "hi")),
    ("sh -c 'echo \"a b\"; exit 3'", ("sh", "-c", "echo \"a b\"; exit 3")),
    ("bundle exec thin -p 3000", ("bundle", "exec", "thin", "-p", "3000")),
    ("[echo, 'a b']", ("echo", "a b")),
    ("''", ()),
    ("[]", ()),
    ("null", None),
])
def test_command_and_entrypoint_forms(tmp_path: Path, value: str, expected: tuple[str, ...] | None) -> None:
    s = service(tmp_path, f"image: x\ncommand: {value}\nentrypoint: {value}\n")
    assert (s.command, s.entrypoint) == (expected, expected)


def test_command_with_unbalanced_quotes(tmp_path: Path) -> None:
    err = error(tmp_path, "image: x\ncommand: echo 'oops\n")
    assert (err.key, "cannot be split into words") == ("command", "cannot be split into words")
    assert "cannot be split into words: No closing quotation" in str(err)


IMAGE = ImageConfig(entrypoint=("/entry",), cmd=("serve", "--port", "80"))


@pytest.mark.parametrize(("entrypoint", "command", "argv"), [
    (None, None, ("/entry", "serve", "--port", "80")),  # the image's Entrypoint + Cmd
    (None, ("run",), ("/entry", "run")),  # command replaces Cmd
    (("/other",), None, ("/other",)),  # entrypoint replaces Entrypoint and drops Cmd
    (("/other",), ("x",), ("/other", "x")),
    ((), None, ()),  # both emptied: no command
    ((), ("only",), ("only",)),
    (None, (), ("/entry",)),
])
def test_command_for_combines_with_the_image_as_docker_does(
        entrypoint: tuple[str, ...] | None, command: tuple[str, ...] | None, argv: tuple[str, ...]) -> None:
    assert Service("s", entrypoint=entrypoint, command=command).command_for(IMAGE) == argv


def test_environment_list_and_map(tmp_path: Path) -> None:
    body = "image: x\nenvironment:\n  STR: text\n  NUM: 5432\n  FLOAT: 1.0\n  ON: on\n  T: true\n  EMPTY: ''\n"
    assert service(tmp_path, body).environment == {"STR": "text", "NUM": "5432", "FLOAT": "1", "ON": "on",
                                                   "T": "true", "EMPTY": ""}
    body = "image: x\nenvironment: [A=1, B=, 'C=x=y', FROM_ENV, NOT_SET]\n"
    assert service(tmp_path, body, env={"FROM_ENV": "v"}).environment == {"A": "1", "B": "", "C": "x=y",
                                                                          "FROM_ENV": "v"}


@pytest.mark.parametrize(("body", "key", "message"), [
    ("environment: ['A =1']", "environment[0]", "is not KEY=VALUE"),
    ("environment: {A: [1]}", "environment.A", "must be a string, a number or a boolean"),
    ("environment: A=1", "environment", "must be a mapping or a list of KEY=VALUE variables"),
    ("labels: {com.docker.compose.project: x}", "labels.com.docker.compose.project", "reserved"),
    ("working_dir: srv", "working_dir", "must be an absolute path"),
    ("hostname: -bad-", "hostname", "not a valid host name"),
    ("hostname: a_b", "hostname", "not a valid host name"),
    ("container_name: -x", "container_name", "not a valid container name"),
    ("stop_signal: SIGNOPE", "stop_signal", "is not a signal"),
    ("stop_signal: 99", "stop_signal", "is not a signal number"),
    ("stop_grace_period: 10", "stop_grace_period", "must be a duration with a unit, e.g. '10s'"),
    ("stop_grace_period: soon", "stop_grace_period", "'soon' is not a duration"),
    ("user: [root]", "user", "must be a string"),
    ("profiles: [-x]", "profiles[0]", "must match"),
    ("pull_policy: sometimes", "pull_policy", "is not always, never"),
    ("pull_policy: build", "pull_policy", "pull_policy: build needs a build: section"),
    ("restart: sometimes", "restart", "restart policy 'sometimes' is not"),
    ("image: ''", "image", "cannot be empty"),
    ("image: 5", "image", "must be a string"),
    ("enviroment: {}", "enviroment", "unknown key 'enviroment'; did you mean 'environment'?"),
    ("frobnicate: 1", "frobnicate", "unknown key 'frobnicate' (known:"),
])
def test_value_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = error(tmp_path, f"image: x\n{body}\n" if not body.startswith("image") else body + "\n")
    assert (err.service, err.key) == ("s", key)
    assert message in str(err)
    assert str(err).startswith(f"{tmp_path / 'compose.yaml'}:")


def test_service_needs_image_or_build(tmp_path: Path) -> None:
    assert "needs image: or build:" in str(error(tmp_path, "user: app\n"))
    (tmp_path / "compose.yaml").write_text("services:\n  s:\n")
    with pytest.raises(Exception, match="the service is empty: it needs image: or build:"):
        service(tmp_path, "")


def test_simple_keys(tmp_path: Path) -> None:
    s = service(tmp_path, """\
        image: x
        user: 1000
        working_dir: /srv
        hostname: web-1.local
        container_name: shop_web
        stop_signal: int
        stop_grace_period: 1m30s
        labels: [tier=front, empty]
        platform: linux/amd64
        pull_policy: if_not_present
        x-note: ignored
        """)
    assert (s.user, s.working_dir, s.hostname, s.container_name) == ("1000", "/srv", "web-1.local", "shop_web")
    assert (s.stop_signal, s.stop_grace_period, s.labels) == ("SIGINT", 90.0, {"tier": "front", "empty": ""})
    assert (s.platform, s.pull, s.restart) == ("linux/amd64", "missing", "no")
    assert s.networks == (NetworkAttachment("default", ("s", "shop_web")),)


@pytest.mark.parametrize(("policy", "pull"), [
    ("always", "always"), ("never", "never"), ("missing", "missing"), ("if_not_present", "missing"),
    ("daily", "missing"), ("every_12h", "missing"),
])
def test_pull_policy(tmp_path: Path, policy: str, pull: str) -> None:
    assert service(tmp_path, f"image: x\npull_policy: {policy}\n").pull == pull


def test_local_image_references_start_at_the_compose_file(tmp_path: Path) -> None:
    digest = "ghcr.io/o/app@sha256:" + "a" * 64
    for ref, expected in [("rootfs:rootfs", f"rootfs:{tmp_path}/rootfs"),
                          ("rootfs:../r.tar", f"rootfs:{tmp_path.parent}/r.tar"),
                          ("oci:layout:v1", f"oci:{tmp_path}/layout:v1"),
                          ("docker-archive:a.tar", f"docker-archive:{tmp_path}/a.tar"),
                          ("rootfs:/abs", "rootfs:/abs"), ("redis:7", "redis:7"), ("host", "host"), (digest, digest)]:
        assert service(tmp_path, f"image: '{ref}'\n").image == expected


@pytest.mark.parametrize(("body", "expected"), [
    ("test: curl -f http://localhost", HealthcheckOverride(test=("CMD-SHELL", "curl -f http://localhost"))),
    ("test: [CMD, curl, -f, http://localhost]\ninterval: 1m30s\ntimeout: 10s\nretries: 3\nstart_period: 40s\n"
     "start_interval: 5s", HealthcheckOverride(("CMD", "curl", "-f", "http://localhost"), 90.0, 10.0, 3, 40.0, 5.0)),
    ("test: [CMD-SHELL, 'redis-cli ping || exit 1']",
     HealthcheckOverride(test=("CMD-SHELL", "redis-cli ping || exit 1"))),
    ("test: [NONE]", HealthcheckOverride(disable=True)),
    ("disable: true", HealthcheckOverride(disable=True)),
    ("interval: 500ms", HealthcheckOverride(interval=0.5)),
])
def test_healthcheck_forms(tmp_path: Path, body: str, expected: HealthcheckOverride) -> None:
    indented = "\n".join("  " + line for line in body.splitlines())
    assert service(tmp_path, f"image: x\nhealthcheck:\n{indented}\n").healthcheck == expected


@pytest.mark.parametrize(("body", "key", "message"), [
    ("{test: [curl, x]}", "healthcheck.test", "a list test starts with CMD, CMD-SHELL or NONE, not 'curl'"),
    ("{test: [CMD]}", "healthcheck.test", "CMD needs the command to run"),
    ("{test: [CMD-SHELL, a, b]}", "healthcheck.test", "CMD-SHELL takes one string"),
    ("{test: ''}", "healthcheck.test", "an empty test checks nothing"),
    ("{test: [CMD, x], disable: true}", "healthcheck", "contradict each other"),
    ("{interval: 30}", "healthcheck.interval", "must be a duration with a unit"),
    ("{retries: -1}", "healthcheck.retries", "must be at least 0"),
    ("{retries: many}", "healthcheck.retries", "must be an integer"),
    ("{start_period: 1y}", "healthcheck.start_period", "unknown unit 'y'"),
    ("{tests: [CMD, x]}", "healthcheck.tests", "did you mean 'test'?"),
])
def test_healthcheck_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = error(tmp_path, f"image: x\nhealthcheck: {body}\n")
    assert (err.key, message in str(err)) == (key, True), str(err)


IMAGE_CHECK = HealthCheck(test=("CMD", "check"), interval=5.0, timeout=2.0, start_period=1.0, retries=7)


@pytest.mark.parametrize(("override", "image", "expected"), [
    (None, IMAGE_CHECK, IMAGE_CHECK),
    (None, None, None),
    (HealthcheckOverride(disable=True), IMAGE_CHECK, None),
    (HealthcheckOverride(interval=0.5), IMAGE_CHECK, HealthCheck(("CMD", "check"), 0.5, 2.0, 1.0, 7)),
    (HealthcheckOverride(interval=0.5), None, None),  # nothing to run
    (HealthcheckOverride(test=("CMD-SHELL", "x")), IMAGE_CHECK, HealthCheck(("CMD-SHELL", "x"), 5.0, 2.0, 1.0, 7)),
    (HealthcheckOverride(test=("CMD-SHELL", "x"), retries=0), None, HealthCheck(("CMD-SHELL", "x"))),  # defaults
    (HealthcheckOverride(("CMD", "y"), 1.0, 3.0, 2, 4.0), IMAGE_CHECK, HealthCheck(("CMD", "y"), 1.0, 3.0, 4.0, 2)),
])
def test_healthcheck_merges_with_the_image_as_docker_does(
        override: HealthcheckOverride | None, image: HealthCheck | None, expected: HealthCheck | None) -> None:
    assert Service("s", healthcheck=override).healthcheck_for(ImageConfig(healthcheck=image)) == expected


def test_depends_on_short_and_long(tmp_path: Path) -> None:
    top = "  db:\n    image: x\n  cache:\n    image: x\n"
    assert service(tmp_path, "image: x\ndepends_on: [db, cache, db]\n", top).depends_on == (
        Dependency("db"), Dependency("cache"))
    body = ("image: x\ndepends_on:\n  db: {condition: service_healthy, restart: true}\n"
            "  cache: {condition: service_completed_successfully, required: false}\n")
    assert service(tmp_path, body, top).depends_on == (
        Dependency("db", "service_healthy", restart=True),
        Dependency("cache", "service_completed_successfully", required=False))


@pytest.mark.parametrize(("body", "key", "message"), [
    ("depends_on: [ghost]", "depends_on", "depends on undefined service 'ghost'"),
    ("depends_on: {db: {condition: service_ready}}", "depends_on.db.condition", "is not one of service_started"),
    ("depends_on: {db: {required: maybe}}", "depends_on.db.required", "must be true or false"),
    ("depends_on: {db: {condtion: service_started}}", "depends_on.db.condtion", "did you mean 'condition'"),
    ("depends_on: db", "depends_on", "must be a list of services or a mapping"),
    ("depends_on: {off: {condition: service_healthy}}", "depends_on", "its healthcheck is disabled"),
])
def test_depends_on_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    top = "  db:\n    image: x\n  off:\n    image: x\n    healthcheck: {disable: true}\n"
    err = error(tmp_path, f"image: x\n{body}\n", top)
    assert (err.service, err.key) == ("s", key)
    assert message in str(err)


NETWORKS_TOP = "networks:\n  front:\n  back: {internal: true}\n"


@pytest.mark.parametrize(("body", "mode", "attachments"), [
    ("", None, [NetworkAttachment("default", ("s",))]),
    ("networks: []", None, [NetworkAttachment("default", ("s",))]),
    ("networks: [front, back]", None, [NetworkAttachment("front", ("s",)), NetworkAttachment("back", ("s",))]),
    ("networks: {front: , back: {aliases: [db, database, s]}}", None,
     [NetworkAttachment("front", ("s",)), NetworkAttachment("back", ("s", "db", "database"))]),
    ("networks: [default, front]", None, [NetworkAttachment("default", ("s",)), NetworkAttachment("front", ("s",))]),
    ("container_name: one\nnetworks: {front: {aliases: [x], priority: 10}}", None,
     [NetworkAttachment("front", ("s", "one", "x"))]),
    ("network_mode: none", "none", []),
    ("network_mode: host", "host", []),
])
def test_networks(tmp_path: Path, body: str, mode: str | None, attachments: list[NetworkAttachment]) -> None:
    s = service(tmp_path, f"image: x\n{body}\n", NETWORKS_TOP)
    assert (s.network_mode, list(s.networks)) == (mode, attachments)


@pytest.mark.parametrize(("body", "key", "message"), [
    ("networks: [elsewhere]", "networks.elsewhere", "network 'elsewhere' is not declared"),
    ("networks: {front: {ipv4_address: 172.16.0.5}}", "networks.front.ipv4_address", "fixed addresses cannot"),
    ("networks: {front: {aliasses: [x]}}", "networks.front.aliasses", "did you mean 'aliases'"),
    ("network_mode: service:db", "network_mode", "network_mode 'service:db' is not supported"),
    ("network_mode: bridge", "network_mode", "is not supported (none, host)"),
    ("network_mode: none\nnetworks: [front]", "", "network_mode and networks exclude each other"),
])
def test_network_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = error(tmp_path, f"image: x\n{body}\n", NETWORKS_TOP)
    assert (err.service, err.key) == ("s", key or None)
    assert message in str(err)


def test_network_attachment_options_that_are_ignored_warn(tmp_path: Path) -> None:
    with pytest.warns(ComposeWarning, match="interface name is chosen by the Engine"):
        service(tmp_path, "image: x\nnetworks: {front: {interface_name: eth1}}\n", NETWORKS_TOP)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM host\n")
    (tmp_path / "app" / "Other.dockerfile").write_text("FROM host\n")
    return tmp_path


def test_build_forms(context: Path) -> None:
    assert service(context, "build: ./app\n").build == Build(context / "app")
    s = service(context, """\
        image: shop/web:dev
        build:
          context: app
          dockerfile: Other.dockerfile
          args: ['VERSION=${VERSION:-3.12}', FROM_ENV, UNSET]
          target: runtime
          network: none
          no_cache: true
          cache_from: [x]
          labels: {a: b}
          tags: [shop/web:extra]
        """, env={"FROM_ENV": "e"})
    assert s.image == "shop/web:dev"
    assert s.build == Build(context / "app", context / "app" / "Other.dockerfile", None,
                            {"VERSION": "3.12", "FROM_ENV": "e"}, "runtime", "none", True)
    assert s.build.containerfile == str(context / "app" / "Other.dockerfile")
    s = service(context, "build:\n  context: .\n  dockerfile_inline: |\n    FROM host\n    RUN true\n"
                         "  args: {A: 1, B: null}\n")
    assert s.build == Build(context, None, "FROM host\nRUN true\n", {"A": "1"})
    assert s.build.containerfile == "FROM host\nRUN true\n"


@pytest.mark.parametrize(("body", "key", "message"), [
    ("build: ./nowhere", "build.context", "is not a directory"),
    ("build: {context: ., dockerfile: Nope}", "build.dockerfile", "Dockerfile {root}/Nope does not exist"),
    ("build: .", "build", "no Dockerfile (or Containerfile) in the build context {root}"),
    ("build: {context: app, dockerfile: Dockerfile, dockerfile_inline: FROM x}", "build",
     "dockerfile and dockerfile_inline exclude each other"),
    ("build: https://github.com/o/r.git#main", "build.context", "remote build context"),
    ("build: {context: app, ssh: [default]}", "build.ssh", "cannot forward an SSH agent"),
    ("build: {context: app, secrets: [x]}", "build.secrets", "cannot mount build secrets"),
    ("build: {context: app, privileged: true}", "build.privileged", "cannot run privileged"),
    ("build: {context: app, network: backend}", "build.network", "build network 'backend' is not supported"),
    ("build: {context: app, target: ''}", "build.target", "must name a build stage"),
    ("build: {context: app, dockerfil: x}", "build.dockerfil", "did you mean 'dockerfile'"),
    ("build: app\nimage: rootfs:./r", "image", "with build:, image: is the tag the built image gets"),
])
def test_build_errors(context: Path, body: str, key: str, message: str) -> None:
    err = error(context, body + "\n")
    assert (err.service, err.key) == ("s", key)
    assert message.replace("{root}", str(context)) in str(err)


def test_build_options_with_no_effect_or_warned(context: Path) -> None:
    assert service(context, "build: {context: app, privileged: false, pull: true, sbom: true}\n").build is not None
    with pytest.warns(ComposeWarning, match="build.platforms: ignored: images are built for this machine"):
        service(context, "build: {context: app, platforms: [linux/arm64]}\n")


def test_configs_and_secrets(tmp_path: Path) -> None:
    (tmp_path / "app.conf").write_text("x\n")
    top = """\
configs:
  app_conf: {file: ./app.conf}
  inline: {content: "port=${PORT:-80}"}
secrets:
  token: {environment: TOKEN}
"""
    s = service(tmp_path, "image: x\nconfigs: [app_conf, {source: inline, target: /etc/inline.conf}]\n"
                          "secrets: [token, {source: token, target: api}]\n", top, env={"TOKEN": "t0k"})
    assert s.files == (FileMount("config", "app_conf", "/app_conf", tmp_path / "app.conf"),
                       FileMount("config", "inline", "/etc/inline.conf", content="port=80"),
                       FileMount("secret", "token", "/run/secrets/token", content="t0k"),
                       FileMount("secret", "token", "/run/secrets/api", content="t0k"))


@pytest.mark.parametrize(("body", "top", "path", "message"), [
    ("configs: [nope]", "", "services.s.configs[0]", "config 'nope' is not declared"),
    ("secrets: [tok]", "secrets:\n  tok: {environment: NOT_SET_X}\n", "secrets.tok.environment",
     "variable NOT_SET_X is not set"),
    ("secrets: [tok]", "secrets:\n  tok: {file: ./missing}\n", "secrets.tok.file", "missing does not exist"),
    ("secrets: [tok]", "secrets:\n  tok: {file: ./a, environment: B}\n", "secrets.tok", "exactly one of"),
    ("secrets: [tok]", "secrets:\n  tok: {content: x}\n", "secrets.tok.content", "unknown key 'content'"),
    ("configs: [c]", "configs:\n  c: {external: true}\n", "configs.c.external", "external configs do not exist"),
    ("configs: [c]", "configs:\n  c: {content: x, template_driver: golang}\n", "configs.c.template_driver",
     "not supported"),
])
def test_config_and_secret_errors(tmp_path: Path, body: str, top: str, path: str, message: str) -> None:
    err = error(tmp_path, f"image: x\n{body}\n", top)
    assert (err.path, message in str(err)) == (path, True), str(err)


def test_file_grant_options_warn(tmp_path: Path) -> None:
    with pytest.warns(ComposeWarning, match="uid, gid and mode are not applied"):
        service(tmp_path, "image: x\nconfigs: [{source: c, mode: 0400}]\n", "configs:\n  c: {content: x}\n")
