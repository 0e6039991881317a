"""``healthcheck:``: the test forms and durations the Compose Specification gives.

``test`` is a string (run by ``/bin/sh -c``, as ``CMD-SHELL``), or a list starting with
``CMD`` (an argv), ``CMD-SHELL`` (one shell command) or ``NONE`` (no check, as
``disable: true``).  Durations are Go durations (``1m30s``, ``500ms``).  Fields left out
come from the image's HEALTHCHECK when the service starts (:class:`HealthcheckOverride`).
"""

from __future__ import annotations

from typing import Any

from ._model import HealthcheckOverride
from ._values import Doc, show
from ._yaml import KeyPath

__all__ = ["read_healthcheck"]

_KEYS = ("test", "interval", "timeout", "retries", "start_period", "start_interval", "disable")


def _test(doc: Doc, path: KeyPath, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        if not value.strip():
            doc.fail(path, "an empty test checks nothing: give a command, or disable: true")
        return ("CMD-SHELL", value)
    test = doc.strings(path, value)
    if not test or test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        doc.fail(path, f"a list test starts with CMD, CMD-SHELL or NONE, not {show(test[0] if test else test)}")
    if test[0] == "CMD" and len(test) < 2:
        doc.fail(path, "CMD needs the command to run: [CMD, program, args...]")
    if test[0] == "CMD-SHELL" and len(test) != 2:
        doc.fail(path, "CMD-SHELL takes one string: [CMD-SHELL, 'command line']")
    return test


def read_healthcheck(doc: Doc, path: KeyPath, value: Any) -> HealthcheckOverride:
    """The service's health check override (``disable`` set for ``NONE`` and ``disable: true``)."""
    spec = doc.mapping(path, value)
    doc.keys(path, spec, _KEYS)
    disable = doc.boolean((*path, "disable"), spec["disable"]) if "disable" in spec else False
    test = _test(doc, (*path, "test"), spec["test"]) if spec.get("test") is not None else None
    if disable and test is not None and test != ("NONE",):
        doc.fail(path, "disable: true and a test contradict each other: keep one")
    if test == ("NONE",):
        disable, test = True, None

    def duration(key: str) -> float | None:
        return doc.duration((*path, key), spec[key]) if spec.get(key) is not None else None

    retries = doc.integer((*path, "retries"), spec["retries"], minimum=0) if spec.get("retries") is not None else None
    return HealthcheckOverride(test=test, interval=duration("interval"), timeout=duration("timeout"), retries=retries,
                               start_period=duration("start_period"), start_interval=duration("start_interval"),
                               disable=disable)
