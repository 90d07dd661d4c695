"""Session 7: close() from another thread wakes a thread blocked in accept (EBADF) or
connect (ECONNABORTED) on every path, a documented difference from Linux (see
ioth.sockets.stream): the accept waiting in the kernel on the listening descriptor (no plugs
to serve inline, or another thread serving), the one serving the plugs inline
(StreamSocket._accept_direct), the connect of an unpaired or a paired socket."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ioth.sockets import socket as isocket
from tests.sockets.helpers import lone, network


def _blocked(fn: Any) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except OSError as exc:
            box.append(exc.errno)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def _listener(stack: Any, host: str) -> Any:
    lst = isocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen()
    return lst


def test_accept_in_the_kernel_wakes_on_close() -> None:
    """A stack with no plugs (nothing to serve inline): accept waits in the kernel on the
    AF_UNIX listening descriptor; close wakes it (EBADF) and the port is closed."""
    with lone() as s:
        lst = _listener(s, "127.0.0.1")
        addr = lst.getsockname()
        t, box = _blocked(lst.accept)
        time.sleep(0.3)
        assert not box
        lst.close()
        t.join(5)
        assert box == [errno.EBADF]
        c = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(3)
        with pytest.raises(ConnectionRefusedError):
            c.connect(addr)
        c.close()


def test_two_accepting_threads_both_wake(tmp_path: Path) -> None:
    """Two threads accept on one listener of a stack with plugs: one serves them inline
    (direct accept), the other waits on the descriptor; close wakes both (EBADF)."""
    with network(tmp_path) as (_, b):
        lst = _listener(b, "192.0.2.2")
        t1, box1 = _blocked(lst.accept)
        time.sleep(0.1)
        t2, box2 = _blocked(lst.accept)
        time.sleep(0.3)
        assert not box1 and not box2
        lst.close()
        t1.join(5)
        t2.join(5)
        assert box1 == [errno.EBADF] and box2 == [errno.EBADF]


def test_accept_after_close_is_ebadf_and_a_later_accept_still_works() -> None:
    """Not a race: after close, accept is EBADF at once; a new listener's accept is not
    disturbed by the wake-up machinery (its first client is accepted)."""
    with lone() as s:
        lst = _listener(s, "127.0.0.1")
        lst.close()
        with pytest.raises(OSError) as exc:
            lst.accept()
        assert exc.value.errno == errno.EBADF
        lst = _listener(s, "127.0.0.1")
        c = isocket(s, socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(3)
        c.connect(lst.getsockname())
        lst.settimeout(3)
        got, _ = lst.accept()
        assert lst._accepting == 0  # type: ignore[attr-defined]
        for x in (got, c, lst):
            x.close()


@pytest.mark.parametrize("take_fd", [False, True])
def test_connect_wakes_on_close(tmp_path: Path, take_fd: bool) -> None:
    """A blocking connect to an on-link address nobody answers (ARP fails only after ~3 s):
    close from another thread makes it fail with ECONNABORTED at once; unpaired socket
    (serving inline) or paired (fileno() taken before: the condition wait)."""
    with network(tmp_path) as (a, _):
        c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
        if take_fd:
            c.fileno()
        t, box = _blocked(lambda: c.connect(("192.0.2.77", 80)))
        time.sleep(0.3)
        assert not box
        c.close()
        t.join(2)
        assert box == [errno.ECONNABORTED]
