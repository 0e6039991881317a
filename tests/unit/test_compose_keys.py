"""The decision table: every service key of the Compose Specification has one class, each class
behaves as documented, and docs/compose.md shows the table the code applies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_minicontainer import ComposeError
from pytest_minicontainer.compose import ComposeWarning, load
from pytest_minicontainer.compose._keys import CONDITIONAL, NO_EFFECT, REFUSED, SUPPORTED, WARNED

from .compose_helpers import error, project, service

# The service properties of compose-spec/compose-spec schema/compose-spec.json (92 keys), plus
# pre_start, which 05-services.md documents and the schema does not list yet.
SPEC_SERVICE_KEYS = [
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent", "command",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
    "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on", "deploy", "develop",
    "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck",
    "hostname", "image", "init", "ipc", "isolation", "label_file", "labels", "links", "logging", "mac_address",
    "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "models", "network_mode", "networks",
    "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_stop",
    "privileged", "profiles", "provider", "pull_policy", "pull_refresh_after", "read_only", "restart", "runtime",
    "scale", "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt",
    "sysctls", "tmpfs", "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from",
    "working_dir", "pre_start",
]

CLASSES = {"supported": SUPPORTED, "no effect": set(NO_EFFECT), "warned": set(WARNED), "refused": set(REFUSED),
           "conditional": set(CONDITIONAL)}
DOCS = Path(__file__).parents[2] / "docs" / "compose.md"


def test_every_spec_key_has_exactly_one_class() -> None:
    assert len(set(SPEC_SERVICE_KEYS)) == 93
    seen: dict[str, str] = {}
    for name, keys in CLASSES.items():
        for key in keys:
            assert key not in seen, f"{key} is {seen.get(key)} and {name}"
            seen[key] = name
    assert set(seen) == set(SPEC_SERVICE_KEYS)


def test_the_docs_table_is_the_code_table() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| (supported|no effect|warned|refused|conditional) \|", DOCS.read_text(),
                      re.MULTILINE)
    documented = dict(rows)
    assert len(documented) == len(rows), "a key is documented twice"
    assert documented == {key: name for name, keys in CLASSES.items() for key in keys}


@pytest.mark.parametrize("key", sorted(NO_EFFECT))
def test_no_effect_keys_load_silently(tmp_path: Path, key: str) -> None:
    assert service(tmp_path, f"image: x\n{key}: {{some: value}}\n").image == "x"


@pytest.mark.parametrize("key", sorted(WARNED))
def test_warned_keys_warn_with_what_changes(tmp_path: Path, key: str) -> None:
    with pytest.warns(ComposeWarning) as record:
        service(tmp_path, f"image: x\n{key}: [value]\n")
    assert [str(w.message) for w in record] == [f"services.s.{key}: ignored: {WARNED[key]}"]
    assert record[0].lineno == 4


@pytest.mark.parametrize("key", sorted(WARNED))
def test_warned_keys_left_empty_say_nothing(tmp_path: Path, key: str) -> None:
    service(tmp_path, f"image: x\n{key}: []\n")


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_refused_keys_say_why(tmp_path: Path, key: str) -> None:
    err = error(tmp_path, f"image: x\n{key}: [value]\n")
    assert (err.service, err.key, err.line) == ("s", key, 4)
    assert str(err).endswith(f"services.s.{key}: not supported: {REFUSED[key]}")


@pytest.mark.parametrize(("key", "accepted", "warned", "refused"), [
    ("cgroup", "private", None, "host"),
    ("ipc", "shareable", None, "service:db"),
    ("ipc", "private", None, "host"),
    ("isolation", "default", None, "hyperv"),
    ("pid", "''", None, "host"),
    ("uts", "''", None, "host"),
    ("privileged", "false", None, "true"),
    ("use_api_socket", "false", None, "true"),
    ("read_only", "false", "true", None),
    ("tty", "false", "true", None),
    ("stdin_open", "false", "'${OPEN:-true}'", None),
    ("restart", "'no'", "unless-stopped", None),
    ("restart", "'no'", "on-failure:3", None),
    ("scale", "1", None, "3"),
    ("deploy", "{replicas: 1}", "{resources: {limits: {memory: 1g}}}", "{replicas: 2}"),
    ("network_mode", "none", None, "container:abc"),
])
def test_conditional_keys(tmp_path: Path, key: str, accepted: str, warned: str | None, refused: str | None) -> None:
    service(tmp_path, f"image: x\n{key}: {accepted}\n")
    if warned is not None:
        with pytest.warns(ComposeWarning, match=f"services.s.{key}: ignored: "):
            service(tmp_path, f"image: x\n{key}: {warned}\n")
    if refused is not None:
        err = error(tmp_path, f"image: x\n{key}: {refused}\n")
        assert err.key is not None and err.key.startswith(key), str(err)
        assert "not supported" in str(err) or "one container per service" in str(err)


@pytest.mark.parametrize(("text", "path", "message"), [
    ("include: [other.yaml]\nservices: {}\n", "include", "not supported: one file is read"),
    ("models: {m: {model: x}}\nservices: {}\n", "models", "not supported"),
    ("service: {}\n", "service", "unknown key 'service'; did you mean 'services'?"),
    ("services: [web]\n", "services", "must be a mapping"),
    ("- services\n", "", "must be a mapping of top-level keys"),
    ("services:\n  'bad name': {image: x}\n", "services.bad name", "must match [a-zA-Z0-9._-]+"),
    ("services: {}\nnetworks:\n  n: {driver: overlay}\n", "networks.n.driver", "network driver 'overlay'"),
    ("services: {}\nnetworks:\n  n: {external: true}\n", "networks.n.external", "external networks do not exist"),
    ("services: {}\nnetworks:\n  n: {ipv4: x}\n", "networks.n.ipv4", "unknown key 'ipv4'"),
    ("services: {}\nvolumes:\n  v: {external: true}\n", "volumes.v.external", "external volumes do not exist"),
    ("services: {}\nvolumes:\n  v: {external: {name: old}}\n", "volumes.v.external", "external volumes do not"),
    ("services: {}\nvolumes:\n  v: {external: maybe}\n", "volumes.v.external", "must be true or false"),
    ("services: {}\nvolumes:\n  v: {driver: nfs}\n", "volumes.v.driver", "volume driver 'nfs'"),
    ("services: {}\nvolumes:\n  v: {driver_opts: {type: none, device: /x, o: bind}}\n", "volumes.v.driver_opts",
     "mount the host path as a bind mount instead"),
    ("services:\n  a: {image: x, container_name: cc}\n  b: {image: x, container_name: cc}\n",
     "services.b.container_name", "names must be unique"),
    ("", "", "the file is empty"),
])
def test_top_level_errors(tmp_path: Path, text: str, path: str, message: str) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    with pytest.raises(ComposeError) as info:
        load(tmp_path)
    assert (info.value.path, message in str(info.value)) == (path, True), str(info.value)


def test_top_level_accepted_keys(tmp_path: Path) -> None:
    p = project(tmp_path, """\
        version: "3.9"
        x-anchors: {whatever: [1, 2]}
        services:
          s:
            image: x
            networks: [back]
            volumes: [data:/data]
        networks:
          back: {internal: true, attachable: true, labels: [a=b], name: backend}
          unused: {driver: bridge}
        volumes:
          data: {driver: local, labels: {a: b}, name: shop-data, external: false}
        """)
    assert list(p.networks) == ["back", "unused"]
    assert p.networks["back"].internal and p.networks["back"].name == "backend"
    assert p.volumes["data"].name == "shop-data"
    with pytest.warns(ComposeWarning, match="networks.n.ipam: ignored: addresses are chosen by the Engine"):
        project(tmp_path, "services: {}\nnetworks:\n  n: {ipam: {config: [{subnet: 10.5.0.0/16}]}}\n")
