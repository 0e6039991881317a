"""One message for JSON of the wrong shape in files users point us at (manifests, configs, indexes).

Such files come from anywhere: a field of the wrong type must end as an :class:`ImageError`
naming the file and the field, never as an AttributeError from deep inside, and never with
the whole (possibly huge) value pasted into the message.
"""

from __future__ import annotations

from typing import Any

from .errors import ImageError

__all__ = ["show", "wrong_shape"]


def show(value: Any) -> str:
    """A short repr for messages: a hostile file may hold megabytes in one field."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def wrong_shape(what: str, where: str | None, field: str, kind: str, value: Any) -> ImageError:
    """``WHAT: FIELD must be KIND, got VALUE`` about the file ``where``."""
    return ImageError(f"{what}: {field} must be {kind}, got {show(value)}", path=where)
