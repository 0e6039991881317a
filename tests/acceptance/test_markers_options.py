"""The marker, options and ini keys: the parts users get wrong first, checked in real runs.

None of these inner runs starts a container, which is itself a property under test: the plugin
must not start the engine (or even import it) for tests that do not ask for a container.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RunPytest = Callable[..., pytest.RunResult]


def test_markers_lists_the_container_signature(run: RunPytest) -> None:
    result = run("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        '@pytest.mark.container(image=None, [*], command=None, env=None, workdir=None, user=None, '
        'mounts=None, network="none", aliases=None, ready=None, timeout=None, ports=None): *',
    ])


def test_unknown_key_and_wrong_types_are_collection_errors(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_functions="""
        import pytest

        @pytest.mark.container(imgae="host")
        def test_typo():
            pass

        @pytest.mark.container(env="A=1", timeout="5")
        def test_types():
            pass

        @pytest.mark.container("host", "other")
        def test_two_images():
            pass

        def test_fine():
            pass
        """,
        test_class="""
        import pytest

        class TestNetwork:
            pytestmark = pytest.mark.container(network="not a name")

            def test_it(self):
                pass
        """,
    )
    result = run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines_random([
        "invalid container markers:",
        "invalid container marker:",
        "*test_typo: @pytest.mark.container: unexpected keyword argument 'imgae' "
        "(allowed: image, command, env, workdir, user, mounts, network, aliases, ready, timeout, ports)",
        "*test_types: @pytest.mark.container: env must be a dict of str to str, not 'A=1'",
        "*test_two_images: @pytest.mark.container: takes at most one positional argument*",
        "*TestNetwork::test_it: @pytest.mark.container: network must be one of 'none', 'host', 'slirp', a network"
        " name (letters, digits, '-', '_', '.') or a Network, not 'not a name'",
        "*signature: @pytest.mark.container(image=None, [*], command=None*",
    ])
    result.assert_outcomes(errors=2)
    assert "passed" not in result.stdout.str()  # nothing ran


def test_wrong_timeout_and_command_types(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.container(timeout=-1)
        def test_negative():
            pass

        @pytest.mark.container(command=["sh", 1], mounts=["/only-one-part"], ready=42)
        def test_command():
            pass
        """
    )
    result = run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    err = result.stdout.str()
    assert "timeout must be a positive number of seconds, not -1" in err
    assert "command must be a string, a list of strings or None, not ['sh', 1]" in err
    # One error per marker: the first bad key of test_command is reported.
    assert "test_negative" in err and "test_command" in err


def test_bad_marker_is_a_clear_error_under_xdist(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.container(imgae="host")
        def test_typo():
            pass
        """
    )
    result = run("-n", "2")
    assert result.ret != 0
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_typo: @pytest.mark.container: unexpected keyword argument 'imgae'*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_closest_marker_wins_function_class_module(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.container(image="from-module")

        def test_module(container_image):
            assert container_image == "from-module"

        @pytest.mark.container(image="from-function")
        def test_function(container_image):
            assert container_image == "from-function"

        @pytest.mark.container(image="from-class")
        class TestClass:
            def test_class(self, container_image):
                assert container_image == "from-class"

            @pytest.mark.container("from-method")
            def test_method(self, container_image):
                assert container_image == "from-method"

            @pytest.mark.container(env={"A": "1"})
            def test_other_key_inherits_image(self, container_image):
                assert container_image == "from-class"
        """
    )
    result = run("-v")
    result.assert_outcomes(passed=5)


def test_ini_image_is_the_default_and_marker_beats_it(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nminicontainer_image = rootfs:/somewhere\n")
    pytester.makepyfile(
        """
        import pytest

        def test_ini(container_image):
            assert container_image == "rootfs:/somewhere"

        @pytest.mark.container(image="host")
        def test_marker(container_image):
            assert container_image == "host"
        """
    )
    run().assert_outcomes(passed=2)


def test_default_image_is_host(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(container_image):\n    assert container_image == 'host'\n")
    run().assert_outcomes(passed=1)


def test_parametrized_image_ids_show_the_image(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_minicontainer.image import Image

        @pytest.mark.parametrize("container_image", ["host", "rootfs:/srv/root"])
        def test_refs(container_image):
            pass

        IMAGE = Image(digest="sha256:" + "ab" * 32, reference="myimage:1.0")

        @pytest.mark.parametrize("container_image", [IMAGE])
        def test_objects(container_image):
            assert str(container_image) == "myimage:1.0"

        @pytest.mark.parametrize("container_image", ["host"], indirect=True)
        def test_indirect(container_image):
            assert container_image == "host"
        """
    )
    result = run("-v")
    result.stdout.fnmatch_lines_random([
        "*::test_refs[[]host[]] PASSED*",
        "*::test_refs[[]rootfs:/srv/root[]] PASSED*",
        "*::test_objects[[]myimage:1.0[]] PASSED*",
        "*::test_indirect[[]host[]] PASSED*",
    ])


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--minicontainer-pull=sometimes"], "", "*--minicontainer-pull: invalid choice: 'sometimes'*"),
        (["--minicontainer-keep=maybe"], "", "*--minicontainer-keep: invalid choice: 'maybe'*"),
        (["--minicontainer-unavailable=ignore"], "", "*--minicontainer-unavailable: invalid choice*"),
        ([], "minicontainer_pull = sometimes", "*ini key minicontainer_pull = 'sometimes': must be one of "
         "missing, always, never*"),
        ([], "minicontainer_keep = maybe", "*ini key minicontainer_keep = 'maybe'*never, failed, always*"),
        ([], "minicontainer_unavailable = ignore", "*minicontainer_unavailable = 'ignore'*error, skip*"),
    ],
)
def test_bad_option_and_ini_values_are_usage_errors(
    run: RunPytest, pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_it():\n    pass\n")
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_option_beats_ini(run: RunPytest, pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nminicontainer_keep = always\nminicontainer_pull = never\n")
    pytester.makeconftest(
        """
        from pytest_minicontainer.fixtures import STATE_KEY

        def pytest_report_header(config):
            s = config.stash[STATE_KEY].settings
            return f"settings: keep={s.keep} pull={s.pull} unavailable={s.unavailable}"
        """
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    result = run("--minicontainer-keep=failed")
    result.stdout.fnmatch_lines(["settings: keep=failed pull=never unavailable=error"])


def test_store_from_option_ini_and_env(run: RunPytest, pytester: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(
        """
        from pytest_minicontainer.fixtures import STATE_KEY

        def pytest_report_header(config):
            return f"store setting: {config.stash[STATE_KEY].settings.store}"
        """
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    root = pytester.path
    monkeypatch.setenv("MINICONTAINER_STORE", "/from/env")
    run(store=False).stdout.fnmatch_lines(["store setting: /from/env"])
    pytester.makeini("[pytest]\nminicontainer_store = rel/store\n")
    run(store=False).stdout.fnmatch_lines([f"store setting: {root}/rel/store"])
    result = run("--minicontainer-store=cli/store", store=False)
    result.stdout.fnmatch_lines([f"store setting: {root}/cli/store"])


def test_no_container_no_engine(run: RunPytest, pytester: pytest.Pytester) -> None:
    """A run whose tests use no container neither imports the engine nor creates a store."""
    store = pytester.path / "untouched-store"
    pytester.makepyfile(
        """
        import sys

        def test_plain():
            heavy = ("pytest_minicontainer.engine", "pytest_minicontainer.container",
                     "pytest_minicontainer.runtime.client", "pytest_minicontainer.store")
            assert not [m for m in sys.modules if m.startswith(heavy)]
        """
    )
    result = run(f"--minicontainer-store={store}", store=False)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"minicontainer: root*, store {store}*"])
    assert not store.exists()


def test_registry_ini_keys_reach_the_pull_code(run: RunPytest, pytester: pytest.Pytester,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINICONTAINER_REGISTRY_MIRROR", raising=False)
    monkeypatch.delenv("MINICONTAINER_INSECURE_REGISTRIES", raising=False)
    monkeypatch.delenv("MINICONTAINER_REGISTRY_TIMEOUT", raising=False)
    pytester.makeini("""
        [pytest]
        minicontainer_registry_timeout = 7.5
        minicontainer_registry_mirror = mirror.example:5000
        minicontainer_insecure_registries =
            reg.example:5000
            other.example
    """)
    # Each xdist worker reads the ini file itself: the settings reach its Engine, not os.environ.
    pytester.makepyfile("""
        import os

        from pytest_minicontainer.session import STATE_KEY

        def test_settings(request):
            options = request.config.stash[STATE_KEY].settings.registry
            assert options.mirror == "mirror.example:5000"
            assert set(options.insecure) == {"reg.example:5000", "other.example"}
            assert options.timeout == 7.5
            assert not [name for name in os.environ if name.startswith("MINICONTAINER_REGISTRY")]
            assert "MINICONTAINER_INSECURE_REGISTRIES" not in os.environ
    """)
    result = run("-n", "2")
    result.assert_outcomes(passed=1)


def test_conftest_hooks_load_without_the_plugin(run: RunPytest, pytester: pytest.Pytester) -> None:
    """The documented way to implement a hook (optional) keeps a conftest loadable under
    ``-p no:minicontainer``; so does the examples' conftest."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(optionalhook=True)
        def pytest_minicontainer_container_options(config, options):
            options["env"]["CI"] = "1"
        """
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    run("-p", "no:minicontainer", store=False).assert_outcomes(passed=1)
    examples = Path(__file__).resolve().parents[2] / "examples"
    result = run("-p", "no:minicontainer", "--co", "-q", str(examples / "test_01_first_container.py"), store=False)
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "tests collected" in output
