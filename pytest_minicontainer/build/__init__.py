"""Build images from a Containerfile with the plugin's own runtime, with a layer cache.

One module per job: ``_parser`` (syntax), ``_subst`` (ARG/ENV substitution), ``_ignore``
(.containerignore), ``_context`` (COPY sources and their content digest), ``_plan`` (stages,
configs, cache texts, all before anything runs) with ``_steps`` (what a plan is made of) and
``_operands`` (each instruction's arguments read), ``_cache`` (keys and the shared map),
``_remote`` (the registry cache), ``_copy`` (COPY/ADD into a layer directory), ``_mounts``
(``RUN --mount``), ``_layers`` (images from layers and configs), ``_executor`` (runs the
steps).  An image's files are read through ``images.ImageView``.
"""

from __future__ import annotations

from ._build import build, read_containerfile

__all__ = ["build", "read_containerfile"]
