"""Adversarial review (session 6): TCP sockets shared with other processes, kernel as oracle.

socketserver.ForkingMixIn, multiprocessing servers and pre-fork daemons hand an accepted
socket to a child process and close the parent's copy at once; a shell-out passes the
descriptor to a program.  On Linux the connection lives while any process holds it: the
parent's close sends nothing, the child's bytes arrive, then the child's close is the FIN.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import _conn
from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop


def _fork(child: Any) -> int:
    pid = os.fork()
    if pid == 0:  # the child: only the descriptor, then leave without any clean-up
        code = 0
        try:
            child()
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def _wait(pid: int) -> Any:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "killed"


def forked_child_serves(peer: Factory, dut: Factory) -> list[Any]:
    """The parent forks and closes its copy at once; the child reads the request, answers
    and closes: the peer gets the answer, then EOF."""
    lst, k, d = _conn(peer, dut)
    k.sendall(b"request")

    def child() -> None:
        d.settimeout(5)
        req = d.recv(100)
        d.sendall(b"answer to " + req)
        d.close()
    pid = _fork(child)
    d.close()  # (ForkingMixIn: the parent's shutdown_request)
    out: list[Any] = [tryit(lambda: k.recv(100)), tryit(lambda: k.recv(100))]
    out.append(_wait(pid))
    close_all(k, lst)
    return out


def forked_child_closes_first(peer: Factory, dut: Factory) -> list[Any]:
    """The child closes its copy without a word; the parent's copy keeps the connection:
    the parent then talks to the peer."""
    lst, k, d = _conn(peer, dut)
    pid = _fork(lambda: d.close())
    out: list[Any] = [_wait(pid)]
    time.sleep(0.2)
    k.settimeout(0.3)
    out.append(tryit(lambda: k.recv(10)))  # (nothing: the connection is still open)
    k.settimeout(5)
    d.sendall(b"parent")
    out.append(tryit(lambda: k.recv(10)))
    k.sendall(b"back")
    out.append(tryit(lambda: d.recv(10)))
    close_all(d, k, lst)
    return out


def parent_and_child_take_turns(peer: Factory, dut: Factory) -> list[Any]:
    """The parent sends, a forked child sends and exits, the parent sends again: the peer
    gets the three in that order (one byte stream, as on Linux)."""
    lst, k, d = _conn(peer, dut)
    d.sendall(b"parent-1,")
    pid = _fork(lambda: d.sendall(b"child,"))
    out: list[Any] = [_wait(pid)]
    d.sendall(b"parent-2")
    d.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = k.recv(100)
        if not chunk:
            break
        got += chunk
    out.append(got)
    close_all(d, k, lst)
    return out


def descriptor_to_a_program(peer: Factory, dut: Factory) -> list[Any]:
    """The descriptor passed to a shell (pass_fds) that writes a line to it; the parent
    then closes: the peer gets the line, then EOF."""
    lst, k, d = _conn(peer, dut)
    fd = d.fileno()
    r = subprocess.run(["sh", "-c", f"echo from-a-program >&{fd}"], pass_fds=[fd],
                       timeout=10, check=False)
    d.close()
    out: list[Any] = [r.returncode, tryit(lambda: k.recv(100)), tryit(lambda: k.recv(100))]
    close_all(k, lst)
    return out


SCENARIOS: list[Scenario] = [forked_child_serves, forked_child_closes_first,
                             descriptor_to_a_program, parent_and_child_take_turns]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_shared_sockets_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
