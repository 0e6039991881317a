"""``load()``: a compose file, its ``.env``, the interpolation environment and the project name.

The interpolation environment is looked up in the order the issue fixes, which is also
docker compose's: ``env=`` first, then the process environment, then the ``.env`` file next
to the compose file (whose own values are interpolated with the first two, then with the
lines before them).

The project name is, as docker compose chooses it: ``project=``, else ``COMPOSE_PROJECT_NAME``
from that environment (both must already be valid names), else the file's ``name:``
(interpolated, then normalized), else the directory's name (normalized).  A valid name has
only lowercase letters, digits, ``-`` and ``_``, and starts with a letter or digit; it is
then available to the file's values as ``${COMPOSE_PROJECT_NAME}``.  Active profiles are
``profiles=``, else ``COMPOSE_PROFILES`` (comma-separated; ``*`` activates all).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import ComposeError
from ._dotenv import DotenvError, parse_dotenv
from ._interpolate import interpolate_tree, warn_unset
from ._keys import TOP_LEVEL
from ._model import Network, Project, Service, Volume
from ._mounts import FileSource
from ._plan import find_cycle
from ._service import Scope, read_service
from ._values import ComposeWarning, Doc
from ._yaml import KeyPath, read_yaml

__all__ = ["COMPOSE_FILES", "find_file", "load", "normalize_project_name"]

#: The names docker compose looks for in a directory, in its order of preference.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
_OVERRIDES = ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yml",
              "docker-compose.override.yaml")
_KEY = re.compile(r"^[a-zA-Z0-9._-]+$")
_VALID_NAME = "only lowercase letters, digits, '-' and '_', starting with a letter or a digit"


def find_file(path: str | os.PathLike[str]) -> Path:
    """The compose file ``path`` names: the file itself, or the one a directory holds.

    In a directory, docker compose also merges ``compose.override.yaml``; one file is read
    here, so such a file gets a warning rather than being silently left out.
    """
    given = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if given.is_file():
        return given
    if not given.is_dir():
        raise ComposeError(f"compose file {given} does not exist")
    found = [given / n for n in COMPOSE_FILES if (given / n).is_file()]
    if not found:
        raise ComposeError(f"no compose file in {given} (looked for {', '.join(COMPOSE_FILES)})")
    if len(found) > 1:
        warnings.warn(f"{given} holds several compose files ({', '.join(f.name for f in found)}): "
                      f"{found[0].name} is read", ComposeWarning, stacklevel=3)
    overrides = [n for n in _OVERRIDES if (given / n).is_file()]
    if overrides:
        warnings.warn(f"{given / overrides[0]} is not merged: only {found[0].name} is read (merge the override "
                      "into it, or load the override's settings another way)", ComposeWarning, stacklevel=3)
    return found[0]


def normalize_project_name(name: str) -> str:
    """``name`` as docker compose normalizes a directory name or ``name:``: lowercase, only
    ``[a-z0-9_-]`` kept, no leading ``-`` or ``_``."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("-_")


def _project_name(doc: Doc, explicit: str | None, lookup: Mapping[str, str], top: Mapping[str, Any],
                  directory: Path) -> str:
    for given, what in ((explicit, "project="), (lookup.get("COMPOSE_PROJECT_NAME"), "COMPOSE_PROJECT_NAME")):
        if given:
            if normalize_project_name(given) != given:
                hint = normalize_project_name(given)
                raise ComposeError(f"invalid project name {given!r} ({what}): use {_VALID_NAME}"
                                   + (f", e.g. {hint!r}" if hint else ""))
            return given
    if top.get("name") is not None:
        name = normalize_project_name(doc.string(("name",), top["name"]))
        if name:
            return name
    name = normalize_project_name(directory.name)
    if not name:
        raise ComposeError(f"no project name: the directory name {directory.name!r} has none of {_VALID_NAME}; "
                           "give name: in the file or project=", file=doc.file)
    return name


def _environment(directory: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    """The interpolation environment: env=, then the process's, then .env."""
    given = dict(env or {})
    for key, value in given.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env must map names to strings, got {key!r}: {value!r}")
    first = {**os.environ, **given}
    dotenv = directory / ".env"
    values: dict[str, str] = {}
    if dotenv.is_file():
        unset: set[str] = set()
        try:
            parse_dotenv(dotenv.read_text(encoding="utf-8"), first.get, into=values, unset=unset)
        except DotenvError as exc:
            raise ComposeError(exc.message, file=str(dotenv), line=exc.line) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ComposeError(f"cannot be read: {exc}", file=str(dotenv)) from None
        warn_unset(Doc(str(dotenv)), dict.fromkeys(sorted(unset), ()))
    return {**values, **first}


def _resources(doc: Doc, section: str, value: Any, known: Collection[str]) -> dict[str, dict[str, Any]]:
    """A top-level ``networks``/``volumes``/``configs``/``secrets`` mapping, keys checked."""
    out = {}
    for key, spec in doc.mapping((section,), value).items():
        path: KeyPath = (section, key)
        if not _KEY.match(key):
            doc.fail(path, f"the name {key!r} must match [a-zA-Z0-9._-]+")
        spec = doc.mapping(path, spec)
        doc.keys(path, spec, known)
        external = spec.get("external")
        if external is not None and (isinstance(external, dict) or doc.boolean((*path, "external"), external)):
            doc.fail((*path, "external"), f"external {section} do not exist here (no Docker daemon): remove "
                                          "external: so the stack makes its own")
        out[key] = spec
    return out


def _networks(doc: Doc, value: Any) -> dict[str, Network]:
    out = {}
    known = ("name", "driver", "driver_opts", "ipam", "external", "internal", "enable_ipv4", "enable_ipv6",
             "attachable", "labels")
    for key, spec in _resources(doc, "networks", value, known).items():
        path: KeyPath = ("networks", key)
        driver = doc.optional_string((*path, "driver"), spec.get("driver"))
        if driver not in (None, "bridge", "default"):
            doc.fail((*path, "driver"), f"network driver {driver!r} is not supported: a stack's networks are "
                                        "private bridges")
        for option, why in (("driver_opts", "driver options are not applied"),
                            ("ipam", "addresses are chosen by the Engine (each stack gets its own subnet)")):
            if spec.get(option):
                doc.warn((*path, option), f"ignored: {why}")
        if spec.get("enable_ipv6") is not None and doc.boolean((*path, "enable_ipv6"), spec["enable_ipv6"]):
            doc.warn((*path, "enable_ipv6"), "ignored: networks have IPv4 addresses only")
        internal = doc.boolean((*path, "internal"), spec["internal"]) if spec.get("internal") is not None else False
        out[key] = Network(key, doc.optional_string((*path, "name"), spec.get("name")), internal)
    return out


def _volumes(doc: Doc, value: Any) -> dict[str, Volume]:
    out = {}
    for key, spec in _resources(doc, "volumes", value, ("name", "driver", "driver_opts", "external", "labels")).items():
        path: KeyPath = ("volumes", key)
        driver = doc.optional_string((*path, "driver"), spec.get("driver"))
        if driver not in (None, "local"):
            doc.fail((*path, "driver"), f"volume driver {driver!r} is not supported: named volumes are directories")
        if spec.get("driver_opts"):
            doc.fail((*path, "driver_opts"), "driver options (a volume over a host path or a remote share) cannot "
                                             "be honoured: mount the host path as a bind mount instead")
        out[key] = Volume(key, doc.optional_string((*path, "name"), spec.get("name")))
    return out


def _file_sources(doc: Doc, section: str, value: Any, directory: Path,
                  lookup: Mapping[str, str]) -> dict[str, FileSource]:
    known = ("name", "file", "environment", "external", "labels", "template_driver",
             *(("content",) if section == "configs" else ("driver", "driver_opts")))
    out = {}
    for key, spec in _resources(doc, section, value, known).items():
        path: KeyPath = (section, key)
        for option in ("template_driver", "driver", "driver_opts"):
            if spec.get(option):
                doc.fail((*path, option), f"{option} is not supported: give file:, environment:"
                                          + (" or content:" if section == "configs" else ""))
        sources = [k for k in ("file", "environment", "content") if spec.get(k) is not None]
        if len(sources) != 1:
            doc.fail(path, "needs exactly one of file:, environment:" + (" or content:" if section == "configs"
                                                                          else ""))
        source = sources[0]
        text = doc.string((*path, source), spec[source])
        if source == "file":
            file = Path(os.path.expanduser(text))
            file = file if file.is_absolute() else directory / file
            if not file.is_file():
                doc.fail((*path, "file"), f"{file} does not exist")
            out[key] = FileSource(file=file)
        elif source == "environment":
            if text not in lookup:
                doc.fail((*path, "environment"), f"variable {text} is not set (env=, the environment or .env)")
            out[key] = FileSource(content=lookup[text])
        else:
            out[key] = FileSource(content=text)
    return out


def _check_references(doc: Doc, services: Mapping[str, Service]) -> None:
    """What one service says of others: dependencies exist, no cycle, names unique."""
    names: dict[str, str] = {}
    for service in services.values():
        for dep in service.depends_on:
            where: KeyPath = ("services", service.name, "depends_on")
            if dep.service not in services:
                doc.fail(where, f"depends on undefined service {dep.service!r}")
            other = services[dep.service]
            if dep.condition == "service_healthy" and other.healthcheck is not None and other.healthcheck.disable:
                doc.fail(where, f"waits for {dep.service!r} to be healthy, but its healthcheck is disabled")
        if service.container_name:
            if service.container_name in names:
                doc.fail(("services", service.name, "container_name"), f"{service.container_name!r} is also the "
                         f"container_name of {names[service.container_name]!r}: names must be unique")
            names[service.container_name] = service.name
    cycle = find_cycle(services)
    if cycle:
        doc.fail(("services", cycle[0], "depends_on"), f"dependency cycle: {' -> '.join(cycle)}")


def load(path: str | os.PathLike[str], *, project: str | None = None, env: Mapping[str, str] | None = None,
         profiles: Iterable[str] = ()) -> Project:
    """Read, interpolate, validate and resolve the compose file at ``path`` (a file or a directory).

    Raises ComposeError naming the file, line, service and key of the first problem; emits a
    ComposeWarning for each setting that is ignored here.
    """
    file = find_file(path)
    directory = file.parent
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(f"cannot be read: {exc}", file=str(file)) from None
    data, lines = read_yaml(text, str(file))
    doc = Doc(str(file), lines)
    if data is None:
        doc.fail((), "the file is empty: a compose file declares services:")
    top = doc.mapping((), data, "a mapping of top-level keys (services:, networks:...)")
    doc.keys((), top, TOP_LEVEL)
    for key in ("include", "models"):
        if top.get(key):
            doc.fail((key,), "not supported: one file is read (copy the included services into it)" if key == "include"
                     else "not supported: AI model runners are not available here")
    environment = _environment(directory, env)
    unset: dict[str, KeyPath] = {}
    named = interpolate_tree({"name": top.get("name")}, (), environment.get, doc, unset)
    name = _project_name(doc, project, environment, named, directory)
    environment["COMPOSE_PROJECT_NAME"] = name
    rest = {k: v for k, v in top.items() if k != "name"}
    top = {**interpolate_tree(rest, (), environment.get, doc, unset), "name": named["name"]}
    warn_unset(doc, unset)
    active = [p.strip() for p in environment.get("COMPOSE_PROFILES", "").split(",") if p.strip()] \
        if not profiles else ([profiles] if isinstance(profiles, str) else list(profiles))
    networks = _networks(doc, top.get("networks"))
    volumes = _volumes(doc, top.get("volumes"))
    scope = Scope(directory, environment.get, networks, volumes,
                  _file_sources(doc, "configs", top.get("configs"), directory, environment),
                  _file_sources(doc, "secrets", top.get("secrets"), directory, environment))
    services: dict[str, Service] = {}
    for service_name, raw in doc.mapping(("services",), top.get("services")).items():
        if not _KEY.match(service_name):
            doc.fail(("services", service_name), f"the service name {service_name!r} must match [a-zA-Z0-9._-]+")
        services[service_name] = read_service(doc, service_name, raw, scope)
    _check_references(doc, services)
    if "default" not in networks and any(a.network == "default" for s in services.values() for a in s.networks):
        networks["default"] = Network("default")
    return Project(name, file, services, networks, volumes, frozenset(active))
