"""One service of a compose file, read into a :class:`Service`.

Each key is first put in its class of the decision table (``_keys``): refused keys end the
reading with the reason and the fix, warned ones warn, unknown ones are an error that
suggests the closest known key.  Then the supported keys are read, each with the shapes the
Compose Specification allows.

The container's environment is built as the spec says: the ``env_file`` files in order (later
files win), then ``environment`` over them, *even* where ``environment`` leaves a variable
unset (``- DEBUG`` with no DEBUG in the interpolation environment removes DEBUG).  Values of
``env_file`` files are interpolated with the project's environment first, then the service's
``environment``, then the values read before them.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ComposeError
from ._build import read_build
from ._dotenv import DotenvError, parse_dotenv
from ._health import read_healthcheck
from ._interpolate import Lookup, warn_unset
from ._keys import CONDITIONAL, NO_EFFECT, REFUSED, SUPPORTED, WARNED
from ._model import Service, VolumeMount
from ._mounts import FileSource, read_files, read_tmpfs, read_volumes
from ._ports import read_ports
from ._relations import read_depends_on, read_networks, read_profiles
from ._values import Doc, path_text, show
from ._yaml import KeyPath

__all__ = ["LOCAL_PREFIXES", "Scope", "read_service"]

#: References that name a file or directory (see the README's image table): relative paths in
#: them start at the compose file's directory.
LOCAL_PREFIXES = ("rootfs:", "oci:", "oci-archive:", "docker-archive:")

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                       r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_RESTART = re.compile(r"^(?:no|always|unless-stopped|on-failure(?::[0-9]+)?)$")
_PULL = {"always": "always", "never": "never", "missing": "missing", "if_not_present": "missing",
         "refresh": "missing", "daily": "missing", "weekly": "missing", "build": None}
_EVERY = re.compile(r"^every_(?:[0-9]+[wdhms])+$")
_KNOWN = SUPPORTED | set(NO_EFFECT) | set(WARNED) | set(REFUSED) | set(CONDITIONAL)


@dataclass(frozen=True)
class Scope:
    """What a service may refer to, and where its values come from."""

    directory: Path
    lookup: Lookup  # the interpolation environment: env=, then the process's, then .env
    networks: Mapping[str, object]
    volumes: Mapping[str, object]
    configs: Mapping[str, FileSource]
    secrets: Mapping[str, FileSource]


def _empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


def _conditional(doc: Doc, path: KeyPath, spec: Mapping[str, Any]) -> str:
    """The keys whose value decides whether they are accepted; returns the restart policy."""

    def text(key: str) -> str:
        return doc.string((*path, key), spec[key]) if spec.get(key) is not None else ""

    def flag(key: str) -> bool:
        return doc.boolean((*path, key), spec[key]) if spec.get(key) is not None else False

    refusals = {
        "cgroup": text("cgroup") not in ("", "private"),
        "ipc": text("ipc") not in ("", "private", "shareable"),
        "isolation": text("isolation") not in ("", "default"),
        "pid": text("pid") != "",
        "uts": text("uts") != "",
        "privileged": flag("privileged"),
        "use_api_socket": flag("use_api_socket"),
    }
    for key, refused in refusals.items():
        if refused:
            doc.fail((*path, key), f"{show(spec[key])} is not supported ({key}: {CONDITIONAL[key].replace('`', '')})")
    for key, what in (("read_only", "the container's root stays writable (each container has its own layer)"),
                      ("tty", "output is not a terminal, so programs may buffer it (Python: PYTHONUNBUFFERED=1)"),
                      ("stdin_open", "the main process's stdin is empty: a program reading it sees its end")):
        if flag(key):
            doc.warn((*path, key), f"ignored: {what}")
    if "scale" in spec and doc.integer((*path, "scale"), spec["scale"]) != 1:
        doc.fail((*path, "scale"), "one container per service here: remove scale, or declare more services")
    deploy = doc.mapping((*path, "deploy"), spec.get("deploy"))
    if deploy.get("replicas") is not None and doc.integer((*path, "deploy", "replicas"), deploy["replicas"]) != 1:
        doc.fail((*path, "deploy", "replicas"), "one container per service here: remove replicas, or declare more "
                                                "services")
    ignored = [k for k in deploy if k != "replicas" and not k.startswith("x-")]
    if ignored:
        doc.warn((*path, "deploy"), f"ignored: {', '.join(ignored)} (resources, placement and policies of a "
                                    "deployment are not applied here)")
    restart = text("restart") or "no"
    if not _RESTART.match(restart):
        doc.fail((*path, "restart"), f"restart policy {restart!r} is not no, always, on-failure[:N] or unless-stopped")
    if restart != "no":
        doc.warn((*path, "restart"), f"ignored: services are not restarted here ({restart}): a service that exits "
                                     "stays exited, and the failure report shows its status")
    return restart


def _env_files(doc: Doc, path: KeyPath, value: Any, directory: Path) -> list[tuple[KeyPath, Path, bool, bool]]:
    """``(where, path, required, raw)`` of each ``env_file`` entry."""
    if value is None:
        return []
    if isinstance(value, str):
        entries: list[tuple[KeyPath, Any]] = [(path, value)]
    elif isinstance(value, list):
        entries = [((*path, i), item) for i, item in enumerate(value)]
    else:
        doc.fail(path, f"must be a path or a list of paths, not {show(value)}")
    out = []
    for where, item in entries:
        required, raw = True, False
        if isinstance(item, dict):
            doc.keys(where, item, ("path", "required", "format"))
            if "required" in item:
                required = doc.boolean((*where, "required"), item["required"])
            fmt = doc.optional_string((*where, "format"), item.get("format"))
            if fmt not in (None, "", "raw"):
                doc.fail((*where, "format"), f"env_file format {fmt!r} is not supported (raw, or leave it out)")
            raw = fmt == "raw"
            item = item.get("path")
        file = Path(doc.string(where, item)).expanduser()
        out.append((where, file if file.is_absolute() else directory / file, required, raw))
    return out


def _environment(doc: Doc, path: KeyPath, spec: Mapping[str, Any], scope: Scope) -> dict[str, str]:
    declared = doc.list_or_dict((*path, "environment"), spec.get("environment"), "variables")
    resolved = {k: v if v is not None else scope.lookup(k) for k, v in declared.items()}

    def lookup(name: str) -> str | None:
        found = scope.lookup(name)
        return found if found is not None else resolved.get(name)

    values: dict[str, str] = {}
    for where, file, required, raw in _env_files(doc, (*path, "env_file"), spec.get("env_file"), scope.directory):
        if not file.is_file():
            if required:
                doc.fail(where, f"env file {file} does not exist (or mark it required: false)")
            continue
        unset: set[str] = set()
        try:
            parse_dotenv(file.read_text(encoding="utf-8"), lookup, into=values, raw=raw, unset=unset)
        except (DotenvError, UnicodeDecodeError, OSError) as exc:
            line = exc.line if isinstance(exc, DotenvError) else None
            text = exc.message if isinstance(exc, DotenvError) else str(exc)
            raise ComposeError(f"{text} (env_file of {path_text(where)})", file=str(file), line=line,
                               path="", service=str(path[-1]), key=path_text(where[2:])) from None
        warn_unset(Doc(str(file)), dict.fromkeys(sorted(unset), ()))
    for key, value in resolved.items():  # environment wins, even to unset a variable
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def _image(doc: Doc, path: KeyPath, value: Any, directory: Path, build: bool) -> str | None:
    if value is None:
        return None
    ref = doc.string(path, value).strip()
    if not ref:
        doc.fail(path, "an image reference cannot be empty")
    for prefix in LOCAL_PREFIXES:
        if ref.startswith(prefix):
            if build:
                doc.fail(path, f"with build:, image: is the tag the built image gets, not a {prefix} reference")
            rest = ref[len(prefix):]
            if rest and not rest.startswith(("/", "~")):
                return prefix + os.path.normpath(directory / rest)
    return ref


def _stop_signal(doc: Doc, path: KeyPath, value: Any) -> str | None:
    if value is None:
        return None
    text = doc.string(path, value, numbers=True).strip().upper()
    if text.isdigit():
        if int(text) not in {s.value for s in signal.Signals}:
            doc.fail(path, f"{value!r} is not a signal number")
        return text
    name = text if text.startswith("SIG") else f"SIG{text}"
    if name not in signal.Signals.__members__:
        doc.fail(path, f"{value!r} is not a signal (SIGTERM, SIGINT, SIGQUIT...)")
    return name


def _checked(doc: Doc, path: KeyPath, value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    if value is not None and not pattern.match(value):
        doc.fail(path, f"{value!r} is not a valid {what}")
    return value


def read_service(doc: Doc, name: str, raw: Any, scope: Scope) -> Service:
    """The service ``name`` of the file, validated and resolved."""
    path: KeyPath = ("services", name)
    if raw is None:
        doc.fail(path, "the service is empty: it needs image: or build:")
    spec = doc.mapping(path, raw)
    doc.keys(path, spec, _KNOWN)
    for key, value in spec.items():
        if key in REFUSED and not _empty(value):
            doc.fail((*path, key), f"not supported: {REFUSED[key]}")
        if key in WARNED and not _empty(value):
            doc.warn((*path, key), f"ignored: {WARNED[key]}")
    restart = _conditional(doc, path, spec)

    def at(key: str) -> KeyPath:
        return (*path, key)

    build = read_build(doc, at("build"), spec["build"], scope.directory, scope.lookup) \
        if spec.get("build") is not None else None
    image = _image(doc, at("image"), spec.get("image"), scope.directory, build is not None)
    if image is None and build is None:
        doc.fail(path, "the service needs image: or build:")
    pull_policy = doc.optional_string(at("pull_policy"), spec.get("pull_policy"))
    if pull_policy is not None and pull_policy not in _PULL and not _EVERY.match(pull_policy):
        doc.fail(at("pull_policy"), f"pull_policy {pull_policy!r} is not always, never, missing, if_not_present, "
                                    "build, daily, weekly or every_<duration>")
    if pull_policy == "build" and build is None:
        doc.fail(at("pull_policy"), "pull_policy: build needs a build: section")
    container_name = _checked(doc, at("container_name"), doc.optional_string(at("container_name"),
                              spec.get("container_name")), _CONTAINER_NAME, "container name")
    network_mode, networks = read_networks(doc, path, spec, name, container_name, scope.networks)
    ports = read_ports(doc, at("ports"), spec.get("ports"))
    if ports and network_mode is not None:
        doc.fail(at("ports"), f"ports cannot be published with network_mode: {network_mode}")
    mounts: list[VolumeMount] = [*read_volumes(doc, at("volumes"), spec.get("volumes"), scope.directory,
                                               scope.volumes), *read_tmpfs(doc, at("tmpfs"), spec.get("tmpfs"))]
    files = [*read_files(doc, at("configs"), spec.get("configs"), "config", scope.configs),
             *read_files(doc, at("secrets"), spec.get("secrets"), "secret", scope.secrets)]
    targets: set[str] = set()
    for target in [m.target for m in mounts] + [f.target for f in files]:
        if target.rstrip("/") in targets:
            doc.fail(path, f"two mounts have the container path {target}")
        targets.add(target.rstrip("/"))
    labels = {k: v or "" for k, v in doc.list_or_dict(at("labels"), spec.get("labels"), "labels").items()}
    for key in labels:
        if key.startswith("com.docker.compose."):
            doc.fail((*at("labels"), key), "labels starting with com.docker.compose. are reserved for compose")
    working_dir = doc.optional_string(at("working_dir"), spec.get("working_dir"))
    if working_dir is not None and not working_dir.startswith("/"):
        doc.fail(at("working_dir"), f"working_dir {working_dir!r} must be an absolute path")
    hostname = doc.optional_string(at("hostname"), spec.get("hostname"), numbers=True)
    grace = spec.get("stop_grace_period")
    return Service(
        name=name,
        image=image,
        build=build,
        pull=_PULL.get(pull_policy, "missing") if pull_policy is not None else None,
        platform=doc.optional_string(at("platform"), spec.get("platform")),
        command=doc.command(at("command"), spec.get("command")),
        entrypoint=doc.command(at("entrypoint"), spec.get("entrypoint")),
        environment=_environment(doc, path, spec, scope),
        working_dir=working_dir,
        user=doc.optional_string(at("user"), spec.get("user"), numbers=True),
        hostname=_checked(doc, at("hostname"), hostname, _HOSTNAME, "host name (RFC 1123)"),
        ports=ports,
        volumes=tuple(mounts),
        files=tuple(files),
        healthcheck=read_healthcheck(doc, at("healthcheck"), spec["healthcheck"])
        if spec.get("healthcheck") is not None else None,
        depends_on=read_depends_on(doc, at("depends_on"), spec.get("depends_on")),
        networks=networks,
        network_mode=network_mode,
        profiles=read_profiles(doc, at("profiles"), spec.get("profiles")),
        stop_signal=_stop_signal(doc, at("stop_signal"), spec.get("stop_signal")),
        stop_grace_period=doc.duration(at("stop_grace_period"), grace) if grace is not None else 10.0,
        labels=labels,
        container_name=container_name,
        restart=restart,
    )
