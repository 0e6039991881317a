"""What a build plan is made of: its stages and their steps, decided before anything runs.

A module of its own so that the plan (``_plan``), the operand readers (``_operands``), the
executor and COPY all share the types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..image import Image, ImageConfig
from ._context import Source

__all__ = ["Stage", "Step"]


@dataclass
class Step:
    """One step: ``kind`` is RUN, COPY, ADD, WORKDIR, VOLUME (may create a layer) or META (config only)."""

    line: int
    kind: str
    text: str  # the substituted instruction, part of the cache key
    config: ImageConfig  # the image config after this step
    argv: tuple[str, ...] = ()
    run_env: dict[str, str] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    from_ref: str | None = None  # COPY --from: an earlier stage's name/index, or an image
    from_paths: tuple[str, ...] = ()
    dest: str = ""
    dest_is_dir: bool = False
    chown: str | None = None
    chmod: int | None = None
    content: str = ""  # digest of the context sources
    display: str = ""  # the instruction as written, for progress lines
    network: str = "default"  # RUN --network: default (the build's), none or host
    mounts: tuple[tuple[tuple[str, str], ...], ...] = ()  # RUN --mount: each as sorted (key, value) pairs
    inline: tuple[tuple[str, str], ...] = ()  # COPY/ADD heredocs: (file name, content), after the sources


@dataclass
class Stage:
    index: int
    name: str | None
    line: int
    base: str  # the FROM reference, substituted
    base_stage: int | None
    base_image: Image | None
    steps: list[Step] = field(default_factory=list)
    config: ImageConfig = field(default_factory=ImageConfig)
