"""The plugin's registry ini keys and layer cap reach the Engine's settings, not ``os.environ``.

Inline (in-process) runs: a plugin that wrote the environment would leave it changed in this
very process, where the test can see it.  No container starts: the settings are read from the
session object the engine is made from (``Engine(registry=, max_layer_size=)``).
"""

from __future__ import annotations

import os

import pytest

ENV = ("MINICONTAINER_MAX_LAYER_SIZE", "MINICONTAINER_REGISTRY_MIRROR", "MINICONTAINER_INSECURE_REGISTRIES",
       "MINICONTAINER_REGISTRY_TIMEOUT")

INI = """
    [pytest]
    minicontainer_registry_timeout = 7.5
    minicontainer_registry_mirror = https://mirror.example:5000/
    minicontainer_insecure_registries =
        reg.example:5000
        other.example
    minicontainer_max_layer_size = 64M
"""

INNER = """
    import os

    from pytest_minicontainer.session import STATE_KEY

    ENV = {env!r}

    def test_settings(request):
        settings = request.config.stash[STATE_KEY].settings
        assert {{name: os.environ.get(name) for name in ENV}} == {expected!r}
        options = settings.registry
        print("SETTINGS", options.mirror, ",".join(sorted(options.insecure)), options.timeout, settings.max_layer_size)
"""


def _inner(pytester: pytest.Pytester, expected: dict[str, str | None]) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(INNER.format(env=ENV, expected=expected))


def test_ini_keys_reach_the_settings_and_leave_the_environment_alone(pytester: pytest.Pytester,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    _inner(pytester, dict.fromkeys(ENV))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SETTINGS mirror.example:5000 other.example,reg.example:5000 7.5 67108864*"])
    assert not [name for name in ENV if name in os.environ]


def test_the_environment_wins_over_each_ini_key(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    given = {"MINICONTAINER_MAX_LAYER_SIZE": "2G", "MINICONTAINER_REGISTRY_MIRROR": "env.example",
             "MINICONTAINER_INSECURE_REGISTRIES": "", "MINICONTAINER_REGISTRY_TIMEOUT": "3"}
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    _inner(pytester, given)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    # the cap: None, the engine reads the environment's when it unpacks; an empty variable is unset
    result.stdout.fnmatch_lines(["*SETTINGS env.example other.example,reg.example:5000 3.0 None*"])
    assert {name: os.environ.get(name) for name in ENV} == given


@pytest.mark.parametrize(("key", "value", "message"), [
    ("minicontainer_max_layer_size", "lots", "*minicontainer_max_layer_size = 'lots' is not a size*"),
    ("minicontainer_registry_timeout", "never", "*MINICONTAINER_REGISTRY_TIMEOUT='never' is not a number of seconds*"
                                               "(ini minicontainer_registry_timeout)*"),
])
def test_a_bad_ini_value_stops_the_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                       key: str, value: str, message: str) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    pytester.makeini(f"[pytest]\n{key} = {value}\n")
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not [name for name in ENV if name in os.environ]
