"""Adversarial review (session 6): cross-thread wake-ups and Python socket-object APIs.

How a thread blocked in recv, send or accept learns that another thread shut the socket
down (the usual way to stop a worker thread), what dup(), makefile(), recvfrom/sendto and
argument checks do on an ioth TCP socket, and connections that end before they are
accepted; the kernel (a second namespace) is the oracle.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, _conn
from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop
LINGER0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"


class _Blocked:
    """``fn()`` on a helper thread (tryit); :meth:`result` waits up to ``wait`` s for it."""

    def __init__(self, fn: Any) -> None:
        self.box: list[Any] = []
        self.t = threading.Thread(target=lambda: self.box.append(tryit(fn)), daemon=True)
        self.t.start()
        time.sleep(0.3)

    def result(self, wait: float = 1.5) -> Any:
        self.t.join(wait)
        return self.box[0] if self.box else "still blocked"


def shutdown_wakes_recv(peer: Factory, dut: Factory) -> list[Any]:
    """A thread blocked in recv; another thread's shutdown(SHUT_RD) or (SHUT_RDWR): Linux's
    recv returns b"" at once."""
    out: list[Any] = []
    for how in (socket.SHUT_RD, socket.SHUT_RDWR):
        lst, k, d = _conn(peer, dut)
        d.settimeout(None)
        b = _Blocked(lambda d=d: d.recv(10))
        out.append(tryit(lambda d=d, how=how: d.shutdown(how)))
        out.append(b.result())
        close_all(d, k, lst)
    return out


def shut_wr_does_not_wake_recv(peer: Factory, dut: Factory) -> list[Any]:
    """shutdown(SHUT_WR) from another thread leaves a blocked recv waiting (Linux); the
    peer's answer to our FIN (its own FIN) then ends it with b""."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    b = _Blocked(lambda: d.recv(10))
    out: list[Any] = [tryit(lambda: d.shutdown(socket.SHUT_WR)), b.result(0.5)]
    out.append(tryit(lambda: k.recv(10)))
    k.shutdown(socket.SHUT_WR)
    out.append(b.result())
    close_all(d, k, lst)
    return out


def shutdown_wakes_send(peer: Factory, dut: Factory) -> list[Any]:
    """A thread blocked in sendall (the peer does not read); another thread's
    shutdown(SHUT_WR): Linux's sendall fails with EPIPE at once."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    blob = b"s" * (64 << 20)
    b = _Blocked(lambda: d.sendall(blob))
    time.sleep(0.3)
    out: list[Any] = [b.result(0.1), tryit(lambda: d.shutdown(socket.SHUT_WR)), b.result()]
    close_all(d, k, lst)
    return out


def peer_reset_wakes_send(peer: Factory, dut: Factory) -> list[Any]:
    """A thread blocked in sendall (the peer does not read); the peer resets: Linux's
    sendall fails with ECONNRESET (or EPIPE) at once."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    blob = b"s" * (64 << 20)
    b = _Blocked(lambda: d.sendall(blob))
    time.sleep(0.3)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    r = b.result()
    out = [r in ("ECONNRESET", "EPIPE"), r == "still blocked"]
    close_all(d, lst)
    return out


def dup_socket(peer: Factory, dut: Factory) -> list[Any]:
    """dup(): a second socket object on the same connection (same family, names, bytes);
    closing the first leaves the connection open for the second."""
    lst, k, d = _conn(peer, dut)
    d2 = tryit(lambda: d.dup())
    if isinstance(d2, str):
        close_all(d, k, lst)
        return ["dup", d2]
    out: list[Any] = [d2.family, d2.type, d2.getpeername() == d.getpeername(),
                      d2.getsockname() == d.getsockname()]
    d.close()
    d2.settimeout(5)
    d2.sendall(b"via dup")
    out.append(tryit(lambda: k.recv(20)))
    k.sendall(b"to dup")
    out.append(tryit(lambda: d2.recv(20)))
    d2.close()
    out.append(tryit(lambda: k.recv(20)))
    close_all(k, lst)
    return out


def makefile_lines(peer: Factory, dut: Factory) -> list[Any]:
    """makefile("rb")/("wb"): readline, read to EOF, write and flush."""
    lst, k, d = _conn(peer, dut)
    r = d.makefile("rb")
    w = d.makefile("wb")
    k.sendall(b"one\ntwo\nthree")
    out: list[Any] = [r.readline(), r.readline()]
    w.write(b"reply\n")
    w.flush()
    out.append(k.recv(10))
    k.shutdown(socket.SHUT_WR)
    out.append(r.read())
    r.close()
    w.close()
    d.close()
    out.append(tryit(lambda: k.recv(10)))
    close_all(k, lst)
    return out


def _err(fn: Any) -> Any:
    try:
        return fn()
    except (ValueError, TypeError, OSError) as exc:
        return type(exc).__name__


def negative_recv_size(peer: Factory, dut: Factory) -> list[Any]:
    """recv(-1) and recv_into(buf, -1): ValueError at once (CPython checks the size), with
    and without data waiting."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(1)
    out: list[Any] = [_err(lambda: d.recv(-1)), _err(lambda: d.recv_into(bytearray(4), -1))]
    k.sendall(b"data")
    time.sleep(0.2)
    out += [_err(lambda: d.recv(-1)), _err(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


def python_level_arguments(peer: Factory, dut: Factory) -> list[Any]:
    """Argument errors and odd buffers: a recv_into size larger than the buffer, a str, a
    memoryview of ints, recvfrom's address, sendto with an address."""
    lst, k, d = _conn(peer, dut)
    err = _err
    out: list[Any] = [err(lambda: d.recv_into(bytearray(4), 10)),
                      err(lambda: d.recv_into(bytearray(4), -1)),
                      err(lambda: d.send("text")),
                      err(lambda: d.send(memoryview(b"\0" * 8).cast("i")))]
    out.append(tryit(lambda: k.recv(100)))
    k.sendall(b"from")
    time.sleep(0.2)
    out.append(tryit(lambda: d.recvfrom(10)))
    out.append(tryit(lambda: d.sendto(b"to", k.getsockname())))
    out.append(tryit(lambda: k.recv(10)))
    close_all(d, k, lst)
    return out


def accept_after_the_peer_left(peer: Factory, dut: Factory) -> list[Any]:
    """Connections that end before accept: one sent data and closed (accept gives it, the
    data then EOF), one reset (Linux: accept still gives it; recv then ECONNRESET)."""
    lst = dut()
    lst.bind((DUT_IP, 0))
    lst.listen(4)
    lst.settimeout(5)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    k.sendall(b"bye")
    k.close()
    time.sleep(0.3)
    d, _ = lst.accept()
    d.settimeout(5)
    out: list[Any] = [tryit(lambda: d.recv(10)), tryit(lambda: d.recv(10))]
    close_all(d)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    k.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    k.close()
    time.sleep(0.3)
    lst.settimeout(0.5)
    a = tryit(lambda: lst.accept())
    out.append(type(a).__name__ if isinstance(a, tuple) else a)
    if isinstance(a, tuple):
        a[0].settimeout(2)
        out.append(tryit(lambda: a[0].recv(10)))
        close_all(a[0])
    close_all(lst)
    return out


def sendall_then_close_delivers(peer: Factory, dut: Factory) -> list[Any]:
    """sendall of 2 MB, close at once: the peer (reading late) still gets every byte then
    EOF (close is graceful)."""
    lst, k, d = _conn(peer, dut)
    blob = bytes(i % 249 for i in range(2 << 20))
    done = threading.Event()

    def send() -> None:
        d.sendall(blob)
        d.close()
        done.set()
    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.3)
    got = bytearray()
    while True:
        chunk = k.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    t.join(5)
    out = [bytes(got) == blob, done.is_set()]
    close_all(k, lst)
    return out


def sendfile_ranges(peer: Factory, dut: Factory) -> list[Any]:
    """sendfile of a range (offset, count) and of the rest: the counts returned, the file
    position left after the range (Python's contract), the peer's bytes."""
    import tempfile
    lst, k, d = _conn(peer, dut)
    data = bytes(i % 253 for i in range(300_000))
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        out: list[Any] = [tryit(lambda: d.sendfile(f, 5, 1000)), f.tell()]
        out.append(tryit(lambda: d.sendfile(f)))
        out.append(f.tell())
    d.shutdown(socket.SHUT_WR)
    got = bytearray()
    while True:
        chunk = k.recv(65536)
        if not chunk:
            break
        got += chunk
    out.append(bytes(got) == data[5:1005] + data[1005:])
    close_all(d, k, lst)
    return out


def message_calls(peer: Factory, dut: Factory) -> list[Any]:
    """sendmsg of several buffers; recvmsg (peeked, then read) and recvmsg_into several
    buffers: data, ancillary data, flags, address."""
    lst, k, d = _conn(peer, dut)
    out: list[Any] = [tryit(lambda: d.sendmsg([b"ab", b"cd", memoryview(b"ef")]))]
    out.append(tryit(lambda: k.recv(10)))
    k.sendall(b"0123456789")
    time.sleep(0.2)
    out.append(tryit(lambda: d.recvmsg(4, 0, socket.MSG_PEEK)))
    out.append(tryit(lambda: d.recvmsg(4)))
    b1, b2 = bytearray(2), bytearray(10)
    out.append(tryit(lambda: d.recvmsg_into([b1, b2])))
    out += [bytes(b1), bytes(b2)]
    close_all(d, k, lst)
    return out


def names_and_ports(peer: Factory, dut: Factory) -> list[Any]:
    """A listener on the wildcard address: the accepted socket's own name is the address
    the peer used; an ephemeral port is in Linux's ip_local_port_range (32768-60999)."""
    lst = dut()
    lst.bind(("", 0))
    lst.listen(2)
    lst.settimeout(5)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    d, _ = lst.accept()
    b = dut()
    b.bind((DUT_IP, 0))
    out: list[Any] = [d.getsockname()[0], 32768 <= b.getsockname()[1] <= 60999,
                      32768 <= lst.getsockname()[1] <= 60999]
    close_all(b, d, k, lst)
    return out


def repr_text(peer: Factory, dut: Factory) -> list[Any]:
    """repr() (what a program logs), class name aside: family and type as numbers, laddr
    and raddr, "[closed]" once closed."""
    import re
    lst = dut()
    lst.bind(("", 0))
    lst.listen(2)
    lst.settimeout(5)
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    d, _ = lst.accept()

    def clean(s: Any) -> str:
        return re.sub(r"^<[\w.]+ |fd=\d+|\d{4,5}\)", "#", repr(s))
    out: list[Any] = [clean(d), clean(lst)]
    close_all(d, k, lst)
    out.append(clean(d))
    return out


SCENARIOS: list[Scenario] = [
    shutdown_wakes_recv, shut_wr_does_not_wake_recv, shutdown_wakes_send, peer_reset_wakes_send,
    dup_socket, makefile_lines, python_level_arguments, accept_after_the_peer_left,
    sendall_then_close_delivers, negative_recv_size, sendfile_ranges, message_calls,
    names_and_ports, repr_text]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_threads_and_objects_as_the_kernel(scenario: Scenario, kind: str, envs: Envs
                                           ) -> None:
    run(scenario, kind, envs)
