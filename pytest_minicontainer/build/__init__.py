"""Build images from a Containerfile with the plugin's own runtime, with a layer cache.

One module per job: ``_parser`` (syntax), ``_subst`` (ARG/ENV substitution), ``_ignore``
(.containerignore), ``_context`` (COPY sources and their content digest), ``_plan`` (stages,
configs, cache texts, all before anything runs), ``_cache`` (keys and the shared map),
``_view`` (an image's files read on the host), ``_copy`` (COPY/ADD into a layer directory),
``_layers`` (images from layers and configs), ``_executor`` (runs the steps), ``_cli``.
"""

from __future__ import annotations

from ._build import build, read_containerfile
from ._cli import add_build_command, cmd_build

__all__ = ["add_build_command", "build", "cmd_build", "read_containerfile"]
