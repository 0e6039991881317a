"""Helpers for the acceptance tests: run real user test files in a fresh pytest process.

Every inner run gets ``--minicontainer-store`` pointing at one store shared by the whole outer
session, so images unpacked by one run are reused by the next and ``~/.cache`` stays clean.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RunPytest = Callable[..., pytest.RunResult]


@pytest.fixture(scope="session")
def mc_store(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """One image store for all inner runs of this session, shared by xdist workers too.

    The store locks what it writes, so workers can share it the way users' workers do; each
    image is then prepared once per session rather than once per worker.
    """
    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        base = base.parent  # the directory all workers' basetemps live in
    store = base / "minicontainer-store"
    store.mkdir(exist_ok=True)
    return store


@pytest.fixture(scope="session")
def containers_available() -> None:
    """Skip, naming the host feature and its fix, when this host cannot run containers."""
    from pytest_minicontainer import Engine, RuntimeUnavailable

    try:
        Engine.probe()
    except RuntimeUnavailable as exc:
        pytest.skip(f"containers cannot run on this host: {exc.cause}; to enable: {exc.fix}")


@pytest.fixture
def run(pytester: pytest.Pytester, mc_store: Path, monkeypatch: pytest.MonkeyPatch) -> RunPytest:
    """``run(*args)``: pytest in a subprocess, in pytester's directory, with the shared store."""
    # The inner run must not inherit the outer environment's choice of store.
    monkeypatch.delenv("MINICONTAINER_STORE", raising=False)

    def run(*args: str, store: bool = True, timeout: float = 180) -> pytest.RunResult:
        argv = ["-p", "no:cacheprovider", *args]
        if store:
            argv.insert(0, f"--minicontainer-store={mc_store}")
        return pytester.runpytest_subprocess(*argv, timeout=timeout)

    return run


@pytest.fixture
def crun(containers_available: None, run: RunPytest) -> RunPytest:
    """Like ``run``, for tests whose inner runs start containers."""
    return run
