"""Which services a stack starts, and in what order.

The spec's profile rules (``15-profiles.md``): a service without ``profiles`` is always
part of the stack; one with profiles only when one of them is active.  A service named
explicitly is started whatever its profiles, and its profiles become active for the rest
of the selection, so a dependency sharing its profile comes along.  A required dependency
that is still not enabled is an error naming the profile to activate; an optional one
(``required: false``) is skipped with a warning.

Services start dependencies first, otherwise in file order.  Cycles are found when the file
is loaded (:func:`find_cycle`), so the order always exists.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .. import ComposeError
from ._values import ComposeWarning

if TYPE_CHECKING:
    from ._model import Project, Service

__all__ = ["find_cycle", "plan"]


def find_cycle(services: Mapping[str, Service]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]``, or None (unknown services are ignored here)."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str] | None:
        if name in trail:
            return [*trail[trail.index(name):], name]
        if name in done or name not in services:
            return None
        for dep in services[name].depends_on:
            cycle = visit(dep.service, [*trail, name])
            if cycle:
                return cycle
        done.add(name)
        return None

    for name in services:
        cycle = visit(name, [])
        if cycle:
            return cycle
    return None


def plan(project: Project, names: Iterable[str] | None = None) -> tuple[Service, ...]:
    """The services to start for ``names`` (None: every enabled service), dependencies first."""
    active = set(project.profiles)
    if names is None:
        targets = [s for s in project.services.values() if s.enabled(active)]
    else:
        wanted = [names] if isinstance(names, str) else list(names)
        targets = [project.service(n) for n in wanted]
        for target in targets:
            active.update(target.profiles)
    selected: dict[str, Service] = {}
    skipped: list[str] = []

    def visit(service: Service) -> None:
        if service.name in selected:
            return
        for dep in service.depends_on:
            other = project.services[dep.service]
            if not other.enabled(active):
                needed = ", ".join(other.profiles)
                if dep.required:
                    raise ComposeError(
                        f"depends on {dep.service!r}, which is not part of the stack: activate one of its profiles "
                        f"({needed}) with profiles=, or start {dep.service!r} explicitly",
                        file=str(project.file), path=f"services.{service.name}.depends_on", service=service.name,
                        key="depends_on")
                skipped.append(f"{project.file}: service {service.name!r}: optional dependency {dep.service!r} is "
                               f"not started (its profiles {needed} are not active)")
                continue
            visit(other)
        selected[service.name] = service

    for target in targets:
        visit(target)
    for message in dict.fromkeys(skipped):
        warnings.warn(message, ComposeWarning, stacklevel=3)  # at the caller of Project.plan()
    return tuple(selected.values())
