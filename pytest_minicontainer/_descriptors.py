"""Room for one open descriptor per directory level while a tree is walked.

The tree walkers (copy, digest, diff) hold a descriptor for every level between the top and
where they are, so that no path longer than one name is ever resolved and no symlink swapped
in meanwhile is followed.  A container can make a tree deeper than the usual soft limit of
1024 open files; the hard limit is commonly far higher (20000 to 1048576), and a walk may
use it for its duration.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator

__all__ = ["many_descriptors"]


@contextlib.contextmanager
def many_descriptors() -> Iterator[None]:
    """Raise the soft limit of open descriptors to the hard one meanwhile, then put it back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = False
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            raised = True
    try:
        yield
    finally:
        if raised:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
