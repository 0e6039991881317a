"""What each key of a service means here: the decision table (``docs/compose.md`` shows it).

A compose file is written for Docker, whose containers can have devices, extra capabilities,
resource limits and the host's namespaces.  Each key falls in one class:

- ``SUPPORTED``: read, validated and honoured (``_service`` reads it);
- ``NO_EFFECT``: accepted without a word, because what it asks for is already what happens
  here or it only describes (``init``: pid 1 is always an init; ``annotations``);
- ``WARNED``: ignored with a :class:`ComposeWarning` saying what is different (resource
  limits: a test rarely depends on them, and refusing would make most real files unusable);
- ``REFUSED``: a ComposeError, because ignoring the key would change what the service does
  and there is no way to do it here (``cap_add``, ``devices``, ``volumes_from``...);
- ``CONDITIONAL``: the value decides (``privileged: false`` is fine, ``true`` refused).

The Compose Specification's schema lists 92 service keys; every one is in exactly one class
(``tests/unit/test_compose_keys.py`` checks it, and that the docs table matches).
"""

from __future__ import annotations

__all__ = ["CONDITIONAL", "NO_EFFECT", "REFUSED", "SUPPORTED", "TOP_LEVEL", "WARNED"]

SUPPORTED = frozenset({
    "build", "command", "configs", "container_name", "depends_on", "entrypoint", "env_file", "environment",
    "healthcheck", "hostname", "image", "labels", "networks", "platform", "ports", "profiles", "pull_policy",
    "secrets", "stop_grace_period", "stop_signal", "tmpfs", "user", "volumes", "working_dir",
})

NO_EFFECT = {
    "annotations": "metadata only",
    "attach": "log attachment of `docker compose up`; read logs with `logs()`",
    "develop": "`docker compose watch` settings",
    "expose": "every port of a service is reachable from the services on its networks",
    "init": "pid 1 of every container is an init that reaps orphans; stop signals reach the main process's group",
    "label_file": "labels are metadata only",
    "logging": "each container keeps its main process's output (`logs()`)",
    "pull_refresh_after": "images are pulled as `pull_policy` says",
}

_LIMITS = "resource limits are not applied: containers share the limits of the test session"
WARNED = {
    **dict.fromkeys((
        "blkio_config", "cgroup_parent", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
        "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "mem_limit", "mem_reservation", "mem_swappiness",
        "memswap_limit", "oom_kill_disable", "oom_score_adj", "pids_limit", "shm_size", "storage_opt", "ulimits",
    ), _LIMITS),
    "cap_drop": "capabilities are not dropped: containers get the set described in the README",
    "dns": "no DNS server is set: names resolve through the stack's /etc/hosts",
    "dns_opt": "no DNS server is set: names resolve through the stack's /etc/hosts",
    "dns_search": "no DNS search domain is set: names resolve through the stack's /etc/hosts",
    "domainname": "the container's domain name is not set",
    "mac_address": "addresses are chosen by the Engine",
    "security_opt": "the library's own seccomp filter and capability set apply",
    "sysctls": "kernel parameters are not set in the container",
}

REFUSED = {
    "cap_add": "extra capabilities cannot be granted here",
    "credential_spec": "Windows containers only",
    "device_cgroup_rules": "containers cannot use host devices here",
    "devices": "containers cannot use host devices here",
    "extends": "one file is read, without merging: copy the settings into the service",
    "external_links": "only services of this file can be reached: add the service to it",
    "extra_hosts": "/etc/hosts belongs to the stack's networks: use networks.<name>.aliases",
    "gpus": "containers cannot use GPUs here",
    "group_add": "supplementary groups cannot be added: give the user the group in the image's /etc/group",
    "links": "use depends_on to order services and networks.<name>.aliases for other names",
    "models": "AI model runners are not available here",
    "post_start": "lifecycle hooks are not run: run the command from the test (`running[name].exec(...)`)",
    "pre_start": "lifecycle hooks are not run: run the command from the test (`running[name].exec(...)`)",
    "pre_stop": "lifecycle hooks are not run: run the command from the test (`running[name].exec(...)`)",
    "provider": "provider services are not available here",
    "runtime": "containers run in this library's own runtime",
    "userns_mode": "every container runs in the user namespace of its Engine",
    "volumes_from": "declare a named volume in the top-level volumes: and mount it in both services",
}

CONDITIONAL = {
    "cgroup": "`private` accepted (as here); `host` refused",
    "deploy": "ignored with a warning (resources, placement, policies); `replicas` other than 1 refused",
    "ipc": "`private`, `shareable` accepted (each container has its own IPC namespace); `host`, `service:`, "
           "`container:` refused",
    "isolation": "`default` accepted; other values refused",
    "network_mode": "`none` and `host` honoured; `bridge`, `service:`, `container:` refused",
    "pid": "empty accepted; `host`, `service:`, `container:` refused (each container has its own pid namespace)",
    "privileged": "`false` accepted; `true` refused",
    "read_only": "`false` accepted; `true` warned: the container's root stays writable",
    "restart": "`no` accepted; other policies warned: a service that exits stays exited",
    "scale": "`1` accepted; other values refused (one container per service)",
    "stdin_open": "`false` accepted; `true` warned: the main process's stdin is empty",
    "tty": "`false` accepted; `true` warned: output is not a terminal, so programs may buffer it",
    "use_api_socket": "`false` accepted; `true` refused (there is no container engine API)",
    "uts": "empty accepted; `host` refused",
}

#: Top-level keys: read (name, services, networks, volumes, configs, secrets), accepted
#: (version, obsolete), refused (include, models) or ignored (``x-`` extensions).
TOP_LEVEL = ("version", "name", "services", "networks", "volumes", "configs", "secrets", "include", "models")
