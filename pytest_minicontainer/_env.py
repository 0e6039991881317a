"""Environment variables checked before they reach a container.

``execve`` takes ``NAME=value`` strings: a name holding ``=`` or a NUL, or an empty one, would
come back from the container as a confusing exit status 127 ("illegal environment variable
name") that names nothing, so the library refuses it up front, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["checked_env"]


def checked_env(env: Mapping[str, object] | None) -> dict[str, str]:
    """``env`` as strings; ValueError naming the first bad name or value.

    Numbers are turned into strings (``{"PORT": 8080}`` means what it says); ``None`` is
    refused rather than becoming the text "None".
    """
    out: dict[str, str] = {}
    for key, value in (env or {}).items():
        name = str(key)
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"invalid environment variable name {name!r}: a name must be non-empty and "
                             "hold no '=' or NUL character")
        if value is None:
            raise ValueError(f"environment variable {name!r} is None: give it a string value "
                             "(or leave it out)")
        text = str(value)
        if "\0" in text:
            raise ValueError(f"environment variable {name!r} holds a NUL character, which no process can receive")
        out[name] = text
    return out
