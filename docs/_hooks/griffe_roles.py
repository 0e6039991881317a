"""A griffe extension: the package's docstrings are reStructuredText-flavoured prose; show their
Sphinx roles (``:class:`Stack```, ``:meth:`~Container.exec```) as code in the API reference.

The docstrings have no parameter sections to parse (they explain in sentences), so the only
markup Markdown would show raw is the role prefix and the ``::`` that opens an example.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj):`~?\.?([^`]+)`")
_LITERAL = re.compile(r"::\n")


def plain(text: str) -> str:
    """``:class:`~a.B``` becomes ```a.B```; a paragraph ending in ``::`` ends in ``:``."""
    return _LITERAL.sub(":\n", _ROLE.sub(r"`\1`", text))


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **_kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
