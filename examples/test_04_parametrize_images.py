"""Run one test against several images: parametrize ``container_image``.

The test ids show the image (``test_has_a_shell[host]``, ``test_has_a_shell[busybox]``);
``busybox`` is resolved by the ``pytest_minicontainer_resolve_image`` hook in conftest.py.
"""

from __future__ import annotations

import pytest

from pytest_minicontainer import Container


@pytest.mark.parametrize("container_image", ["host", "busybox"])
def test_has_a_shell(container: Container, container_image: str) -> None:
    result = container.exec("echo $0")
    assert result.returncode == 0
    assert result.stdout.strip() in ("sh", "/bin/sh")
