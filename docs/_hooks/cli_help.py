"""mkdocs hook: the CLI reference shows ``minicontainer``'s own ``--help`` texts, as built now.

A page holding the line ``<!-- minicontainer --help -->`` gets, in its place, the top-level
help and then one section per subcommand (found in the top-level usage line), each the output
of ``python -m pytest_minicontainer SUBCOMMAND --help``.  Run, not copied, so that the page
cannot drift from the parser; a command that fails breaks the (strict) build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

MARKER = "<!-- minicontainer --help -->"


def _help(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "100"}  # argparse wraps at the terminal's width
    result = subprocess.run([sys.executable, "-m", "pytest_minicontainer", *args, "--help"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"minicontainer {' '.join(args)} --help failed: {result.stderr.strip()}")
    return result.stdout.rstrip()


def _block(text: str) -> str:
    return "```text\n" + text + "\n```\n"


def on_page_markdown(markdown: str, page: Any, **_kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    top = _help()
    found = re.search(r"\{([a-z,_-]+)\}", top)
    commands = found.group(1).split(",") if found else []
    parts = [_block(top)]
    for command in commands:
        parts.append(f"### `minicontainer {command}`\n\n" + _block(_help(command)))
    return markdown.replace(MARKER, "\n".join(parts))
