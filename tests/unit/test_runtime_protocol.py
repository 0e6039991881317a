"""The runtime's messages: one shape of failure, one decoder, one dispatch, one reap loop."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_minicontainer.errors import ContainerError
from pytest_minicontainer.runtime import protocol
from pytest_minicontainer.runtime.server import Exchange, Server, children


def test_error_reply_of_an_oserror_keeps_its_errno_and_optionally_its_strerror() -> None:
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")
    assert protocol.error_reply(exc) == {"ok": False, "error": str(exc), "errno": errno.ENOENT,
                                         "type": "FileNotFoundError"}
    assert protocol.error_reply(exc, strerror=True)["strerror"] == "No such file or directory"


def test_error_reply_of_a_bug_names_where_and_what() -> None:
    reply = protocol.error_reply(KeyError("spec"), "create")
    assert reply["error"] == "create: KeyError: 'spec'" and reply["errno"] == 0


def test_error_reply_of_a_start_says_the_step_and_what_to_clean_up() -> None:
    reply = protocol.error_reply("still uid 1000", err=errno.EPERM, step="mapped")
    assert reply == {"ok": False, "error": "still uid 1000", "errno": errno.EPERM, "step": "mapped"}
    reply = protocol.error_reply(OSError(errno.EPERM, "no"), step="namespaces", cid="c1", scratch="/s/c1")
    assert (reply["step"], reply["id"], reply["scratch"]) == ("namespaces", "c1", "/s/c1")


def test_raise_for_decodes_each_kind_of_answer() -> None:
    assert protocol.raise_for({"ok": True, "pid": 3}, "gone") == {"ok": True, "pid": 3}
    with pytest.raises(ContainerError, match=r"^gone$"):
        protocol.raise_for(None, "gone")
    with pytest.raises(OSError) as caught:
        protocol.raise_for(protocol.error_reply(FileNotFoundError(2, "No such file", "/x"), strerror=True), "gone")
    assert caught.value.errno == 2 and caught.value.strerror == "No such file"
    with pytest.raises(ContainerError, match=r"^copy failed: boom$"):
        protocol.raise_for(protocol.error_reply("boom"), "gone", "copy failed: ")
    with pytest.raises(ContainerError, match="cannot start the command: "):  # the caller's own failure
        protocol.raise_for(protocol.error_reply(OSError(2, "x")), "gone", "cannot start the command: ", oserror=False)


class Echo(Server):
    """A server without a loop: only its dispatch is tested (no signal set-up)."""

    def __init__(self) -> None:  # no super().__init__: no wakeup fd, no SIGCHLD handler
        self.kept: list[socket.socket] = []
        self.seen: list[int] = []

    def op_echo(self, message: dict[str, Any], ex: Exchange) -> bool:
        self.seen = list(ex.fds)
        ex.answer({"ok": True, "said": message["say"]})
        return False

    def op_later(self, message: dict[str, Any], ex: Exchange) -> bool:
        self.kept.append(ex.keep())
        return False

    def op_stop(self, message: dict[str, Any], ex: Exchange) -> bool:
        ex.answer()
        return True

    def op_fail(self, message: dict[str, Any], ex: Exchange) -> bool:
        if message.get("os"):
            raise OSError(errno.EACCES, "denied")
        raise RuntimeError("bug")

    ops = {"echo": op_echo, "later": op_later, "stop": op_stop, "fail": op_fail}


@pytest.fixture
def server() -> Iterator[Echo]:
    made = Echo()
    yield made
    for sock in made.kept:
        sock.close()


def ask(server: Server, message: dict[str, Any], extra: int = 0) -> tuple[bool, dict[str, Any] | None]:
    mine, theirs = protocol.reply_pair()
    fds = [os.dup(theirs.fileno())] + [os.open(os.devnull, os.O_RDONLY) for _ in range(extra)]
    theirs.close()
    stop = server.handle(message, fds)
    mine.settimeout(1)
    try:
        answer, _ = protocol.recv(mine)
    except TimeoutError:
        answer = None
    mine.close()
    return stop, answer


def test_dispatch_answers_through_the_table_and_closes_the_descriptors(server: Echo) -> None:
    stop, answer = ask(server, {"op": "echo", "say": "hi"}, extra=2)
    assert (stop, answer) == (False, {"ok": True, "said": "hi"})
    for fd in server.seen:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert ask(server, {"op": "stop"}) == (True, {"ok": True})


def test_an_unknown_op_is_answered_with_its_name(server: Echo) -> None:
    _stop, answer = ask(server, {"op": "dance"})
    assert answer is not None and answer["error"] == "unknown request 'dance'"
    _stop, answer = ask(server, {})
    assert answer is not None and answer["error"] == "unknown request None"


def test_a_failing_handler_is_answered_and_the_server_goes_on(server: Echo) -> None:
    _stop, answer = ask(server, {"op": "fail", "os": True})
    assert answer is not None and answer["errno"] == errno.EACCES and answer["error"] == "[Errno 13] denied"
    stop, answer = ask(server, {"op": "fail"})
    assert not stop and answer is not None and answer["error"] == "fail: RuntimeError: bug"
    _stop, answer = ask(server, {"op": "echo"})  # a malformed request: a KeyError, answered
    assert answer is not None and answer["error"] == "echo: KeyError: 'say'"


def test_a_kept_reply_stays_open_and_a_request_without_one_is_ignored(server: Echo) -> None:
    mine, theirs = protocol.reply_pair()
    assert not server.handle({"op": "later"}, [os.dup(theirs.fileno())])
    theirs.close()
    protocol.send(server.kept[0], {"status": 0})
    assert protocol.recv(mine)[0] == {"status": 0}
    mine.close()
    assert not server.handle({"op": "echo", "say": "x"}, [])
    pipe_r, pipe_w = os.pipe()  # not a socket: nowhere to answer either, and not kept
    assert not server.handle({"op": "echo", "say": "x"}, [pipe_r, pipe_w])
    for fd in (pipe_r, pipe_w):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_children_reaps_every_exited_child() -> None:
    # in a child of its own: the test process's other children (an Engine's zygote) are not ours to reap
    pid = os.fork()
    if pid == 0:  # pragma: no cover - reported through the exit status
        code = 1
        try:
            kids = {}
            for n in (3, 4):
                kid = os.fork()
                if kid == 0:
                    os._exit(n)
                kids[kid] = n
            got = {p: os.WEXITSTATUS(s) for p, s in children(block=True)}
            code = 0 if got == kids and not list(children()) else 2
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
