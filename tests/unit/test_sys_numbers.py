"""System call numbers libc has no wrapper for: known per architecture, never guessed."""

from __future__ import annotations

import errno
import os

import pytest

from pytest_minicontainer import _sys


def test_an_unknown_architecture_fails_fast_naming_it() -> None:
    with pytest.raises(_sys.SysError) as info:
        _sys._number("pivot_root", None)
    assert info.value.errno == errno.ENOSYS
    assert os.uname().machine in str(info.value) and "known: aarch64" in str(info.value)


def test_this_machine_has_its_numbers() -> None:
    if os.uname().machine not in _sys._SYSCALL_NUMBERS["clone"]:
        pytest.skip(f"{os.uname().machine} is not one of the architectures the runtime knows")
    assert _sys._number("clone", _sys._SYS_CLONE) == _sys._SYSCALL_NUMBERS["clone"][os.uname().machine]
    assert _sys._number("pivot_root", _sys._SYS_PIVOT_ROOT) > 0
