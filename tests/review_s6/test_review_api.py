"""Adversarial review (session 6): recv/send flags, timeouts and API misuse, the kernel as oracle.

MSG_PEEK, MSG_WAITALL (a peer sending in pieces, then closing early), MSG_DONTWAIT on a
blocking socket, recv(0), recv after end of stream, empty sends; recv and sendall timeouts;
the errno of calls made in the wrong state (listen on a connected socket, accept on one not
listening, connect and bind twice, a foreign address, port 0, calls after detach).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from tests.review_s5.test_review_oracle import DUT_IP, PEER_IP, _conn
from tests.review_s6.oracle import Envs, Factory, Scenario, close_all, params, run, tryit

pytestmark = pytest.mark.interop


def _later(delay: float, fn: Any) -> threading.Thread:
    def go() -> None:
        time.sleep(delay)
        fn()
    t = threading.Thread(target=go)
    t.start()
    return t


def _bounded(fn: Any, wait: float = 1.5) -> Any:
    """``fn()`` (tryit) on a helper thread: its result, or "blocked" after ``wait`` s (the
    thread is left to the socket's close, which ends it)."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(tryit(fn)), daemon=True)
    t.start()
    t.join(wait)
    return box[0] if box else "blocked"


def peek(peer: Factory, dut: Factory) -> list[Any]:
    """MSG_PEEK leaves the bytes; a peek waits for data on a blocking socket; at EOF b""."""
    lst, k, d = _conn(peer, dut)
    t = _later(0.2, lambda: k.sendall(b"hello"))
    out: list[Any] = [tryit(lambda: d.recv(3, socket.MSG_PEEK))]
    t.join()
    time.sleep(0.1)
    out += [tryit(lambda: d.recv(10, socket.MSG_PEEK)), tryit(lambda: d.recv(2)),
            tryit(lambda: d.recv(10, socket.MSG_PEEK)), tryit(lambda: d.recv(10))]
    k.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    out += [tryit(lambda: d.recv(10, socket.MSG_PEEK)), tryit(lambda: d.recv(10))]
    close_all(d, k, lst)
    return out


def peek_into(peer: Factory, dut: Factory) -> list[Any]:
    """recv_into with MSG_PEEK, then a plain recv_into."""
    lst, k, d = _conn(peer, dut)
    k.sendall(b"abcdef")
    time.sleep(0.2)
    buf = bytearray(4)
    out: list[Any] = [tryit(lambda: d.recv_into(buf, 4, socket.MSG_PEEK)), bytes(buf)]
    buf2 = bytearray(10)
    out += [tryit(lambda: d.recv_into(buf2)), bytes(buf2)]
    close_all(d, k, lst)
    return out


def waitall_pieces(peer: Factory, dut: Factory) -> list[Any]:
    """MSG_WAITALL gathers three pieces sent 0.1 s apart into one 6-byte result."""
    lst, k, d = _conn(peer, dut)

    def pieces() -> None:
        for p in (b"ab", b"cd", b"ef"):
            k.sendall(p)
            time.sleep(0.1)
    t = _later(0, pieces)
    out: list[Any] = [tryit(lambda: d.recv(6, socket.MSG_WAITALL))]
    t.join()
    close_all(d, k, lst)
    return out


def waitall_early_close(peer: Factory, dut: Factory) -> list[Any]:
    """MSG_WAITALL for 100 bytes, the peer sends 6 in pieces and closes: the 6 bytes, then
    end of stream."""
    lst, k, d = _conn(peer, dut)

    def pieces() -> None:
        for p in (b"ab", b"cd", b"ef"):
            k.sendall(p)
            time.sleep(0.1)
        k.close()
    t = _later(0, pieces)
    out: list[Any] = [tryit(lambda: d.recv(100, socket.MSG_WAITALL)),
                      tryit(lambda: d.recv(100, socket.MSG_WAITALL))]
    t.join()
    close_all(d, lst)
    return out


def waitall_into_timeout(peer: Factory, dut: Factory) -> list[Any]:
    """recv_into with MSG_WAITALL and a timeout, the peer sending less than asked: Linux
    returns what came when the timeout ends (the bytes are not lost)."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(0.5)
    k.sendall(b"abc")
    buf = bytearray(10)
    out: list[Any] = [tryit(lambda: d.recv_into(buf, 10, socket.MSG_WAITALL)), bytes(buf)]
    d.settimeout(5)
    k.sendall(b"def")
    out.append(tryit(lambda: d.recv(10)))
    close_all(d, k, lst)
    return out


def dontwait_and_sizes(peer: Factory, dut: Factory) -> list[Any]:
    """MSG_DONTWAIT on a blocking socket, empty sends, recv(0) with data waiting, recv after
    end of stream (again and again)."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    out: list[Any] = [tryit(lambda: d.recv(10, socket.MSG_DONTWAIT)),
                      tryit(lambda: d.send(b"")), tryit(lambda: d.sendall(b"")),
                      tryit(lambda: d.send(b"", socket.MSG_DONTWAIT))]
    k.sendall(b"xy")
    time.sleep(0.2)
    out += [_bounded(lambda: d.recv(0)), tryit(lambda: d.recv(10, socket.MSG_DONTWAIT))]
    k.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    out += [tryit(lambda: d.recv(10)), tryit(lambda: d.recv(10)),
            tryit(lambda: d.recv(10, socket.MSG_DONTWAIT)), _bounded(lambda: d.recv(0)),
            tryit(lambda: d.recv_into(bytearray(4))), tryit(lambda: d.send(b""))]
    close_all(d, k, lst)
    return out


def recv_zero_without_data(peer: Factory, dut: Factory) -> list[Any]:
    """recv(0) on a blocking socket with nothing received: Linux returns b"" at once."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    out = [_bounded(lambda: d.recv(0)), _bounded(lambda: d.recv_into(bytearray(4), 0))]
    close_all(d, k, lst)
    return out


def empty_send_states(peer: Factory, dut: Factory) -> list[Any]:
    """send(b"") on an unconnected socket and after a shutdown(SHUT_WR)."""
    s = dut()
    out: list[Any] = [tryit(lambda: s.send(b""))]
    close_all(s)
    lst, k, d = _conn(peer, dut)
    d.shutdown(socket.SHUT_WR)
    out += [tryit(lambda: d.send(b"")), tryit(lambda: d.send(b"x"))]
    close_all(d, k, lst)
    return out


def recv_timeout_then_usable(peer: Factory, dut: Factory) -> list[Any]:
    """recv with a timeout and nothing sent: TimeoutError (an OSError, errno None, named
    'timed out'); the socket still works afterwards, in both directions."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(0.3)
    out: list[Any] = []
    try:
        d.recv(10)
        out.append("no timeout")
    except TimeoutError as exc:
        out += [type(exc).__name__, exc.errno, str(exc), isinstance(exc, socket.timeout)]
    k.sendall(b"late")
    out.append(tryit(lambda: d.recv(10)))
    d.sendall(b"back")
    out.append(tryit(lambda: k.recv(10)))
    d.settimeout(0.2)
    out.append(tryit(lambda: d.recv_into(bytearray(4))))
    close_all(d, k, lst)
    return out


def sendall_timeout_peer_not_reading(peer: Factory, dut: Factory) -> list[Any]:
    """sendall of 64 MB with a 0.5 s timeout while the peer does not read: TimeoutError;
    the peer then receives a prefix of the data (what was sent before the timeout), and the
    socket takes more data once the peer reads."""
    lst, k, d = _conn(peer, dut)
    blob = bytes(i % 251 for i in range(1 << 20)) * 64
    d.settimeout(0.5)
    out: list[Any] = [tryit(lambda: d.sendall(blob))]
    d.settimeout(5)
    got = bytearray()
    k.settimeout(0.5)
    while True:
        try:
            chunk = k.recv(1 << 16)
        except TimeoutError:
            break
        if not chunk:
            break
        got += chunk
    out += [0 < len(got) < len(blob), blob.startswith(bytes(got))]
    out.append(tryit(lambda: d.send(b"more")))
    close_all(d, k, lst)
    return out


def nonblocking_send_fills_up(peer: Factory, dut: Factory) -> list[Any]:
    """A non-blocking send to a peer that does not read ends in EAGAIN (BlockingIOError),
    with a bounded amount accepted (under 32 MB)."""
    lst, k, d = _conn(peer, dut)
    d.setblocking(False)
    total = 0
    err: Any = None
    chunk = b"z" * 65536
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and total < 64 << 20:
        try:
            total += d.send(chunk)
        except BlockingIOError as exc:
            err = type(exc).__name__
            time.sleep(0.05)
            try:
                total += d.send(chunk)
            except BlockingIOError:
                break
    out = [err, total < 32 << 20]
    close_all(d, k, lst)
    return out


def accept_timeouts(peer: Factory, dut: Factory) -> list[Any]:
    """accept with a timeout and non-blocking, nothing pending; then a connection."""
    s = dut()
    s.bind((DUT_IP, 0))
    s.listen(4)
    s.settimeout(0.2)
    out: list[Any] = [tryit(lambda: s.accept())]
    s.setblocking(False)
    out.append(tryit(lambda: s.accept()))
    k = peer()
    k.settimeout(5)
    k.connect((DUT_IP, s.getsockname()[1]))
    time.sleep(0.2)
    a = tryit(lambda: s.accept())
    out.append(type(a).__name__)
    if isinstance(a, tuple):
        out += [a[1] == k.getsockname(), a[0].gettimeout(), a[0].getblocking()]
        close_all(a[0])
    close_all(k, s)
    return out


# -- misuse ----------------------------------------------------------------------------------
def misuse_connected(peer: Factory, dut: Factory) -> list[Any]:
    """On a connected (blocking) socket: listen, accept, connect again, bind."""
    lst, k, d = _conn(peer, dut)
    d.settimeout(None)
    out: list[Any] = [("listen", tryit(lambda: d.listen(1))),
                      ("accept", tryit(lambda: d.accept())),
                      ("connect", tryit(lambda: d.connect(k.getsockname()))),
                      ("connect_ex", tryit(lambda: d.connect_ex(k.getsockname()))),
                      ("bind", tryit(lambda: d.bind((DUT_IP, 0))))]
    close_all(d, k, lst)
    return out


def misuse_unconnected(peer: Factory, dut: Factory) -> list[Any]:
    """On a fresh socket: accept, send, recv, getpeername, shutdown; bind twice; accept
    bound; listen twice; bind a listener; a foreign address."""
    s = dut()
    out: list[Any] = [("accept", tryit(lambda: s.accept())),
                      ("send", tryit(lambda: s.send(b"x"))),
                      ("sendall", tryit(lambda: s.sendall(b"x"))),
                      ("recv", tryit(lambda: s.recv(1))),
                      ("getpeername", tryit(lambda: s.getpeername())),
                      ("shutdown", tryit(lambda: s.shutdown(socket.SHUT_RDWR))),
                      ("getsockname", tryit(lambda: s.getsockname()))]
    out += [("bind", tryit(lambda: s.bind((DUT_IP, 0)))),
            ("bind again", tryit(lambda: s.bind((DUT_IP, 0)))),
            ("accept bound", tryit(lambda: s.accept()))]
    s.listen(2)
    out += [("listen again", tryit(lambda: s.listen(5))),
            ("bind listening", tryit(lambda: s.bind((DUT_IP, 0))))]
    close_all(s)
    f = dut()
    out.append(("bind foreign", tryit(lambda: f.bind(("192.0.2.99", 0)))))
    out.append(("bind foreign net", tryit(lambda: f.bind(("198.51.100.1", 0)))))
    close_all(f)
    return out


def connect_to_port_zero(peer: Factory, dut: Factory) -> list[Any]:
    """connect to port 0: Linux sends the SYN, the peer resets it: ECONNREFUSED."""
    z = dut()
    z.settimeout(3)
    out = [tryit(lambda: z.connect((PEER_IP, 0))), tryit(lambda: z.connect_ex((PEER_IP, 0)))]
    close_all(z)
    return out


def recv_zero_unconnected(peer: Factory, dut: Factory) -> list[Any]:
    """recv(0) on a fresh socket: Linux b"" (the zero length wins), recv(1) ENOTCONN."""
    s = dut()
    out = [tryit(lambda: s.recv(0)), tryit(lambda: s.recv(1))]
    close_all(s)
    return out


def connect_on_a_listener(peer: Factory, dut: Factory) -> list[Any]:
    """connect on a listening socket: Linux EISCONN (connect_ex too)."""
    s = dut()
    s.bind((DUT_IP, 0))
    s.listen(2)
    out = [tryit(lambda: s.connect((PEER_IP, 9))), tryit(lambda: s.connect_ex((PEER_IP, 9)))]
    close_all(s)
    return out


def shutdown_wakes_a_blocked_accept(peer: Factory, dut: Factory) -> list[Any]:
    """The classic way to stop a server thread blocked in accept: shutdown(SHUT_RDWR) of
    the listener from another thread.  Linux: shutdown returns None, the blocked accept
    fails with EINVAL at once, a later accept too, and new connects are refused."""
    s = dut()
    s.bind((DUT_IP, 0))
    s.listen(2)
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(tryit(lambda: s.accept())), daemon=True)
    t.start()
    time.sleep(0.3)
    out: list[Any] = [("shutdown", tryit(lambda: s.shutdown(socket.SHUT_RDWR)))]
    t.join(1.5)
    out.append(("blocked accept", box[0] if box else "still blocked"))
    s.settimeout(1)
    out.append(("accept", tryit(lambda: s.accept())))
    k = peer()
    k.settimeout(2)
    out.append(("connect", tryit(lambda: k.connect((DUT_IP, s.getsockname()[1])))))
    close_all(k, s)
    return out


def listen_without_bind(peer: Factory, dut: Factory) -> list[Any]:
    """listen() on a fresh socket binds an ephemeral port on the wildcard address (Linux):
    a peer connects to it."""
    s = dut()
    out: list[Any] = [tryit(lambda: s.listen(2))]
    name = s.getsockname()
    out += [name[0], name[1] > 0]
    if name[1]:
        k = peer()
        k.settimeout(3)
        out.append(tryit(lambda: k.connect((DUT_IP, name[1]))))
        close_all(k)
    close_all(s)
    return out


def shutdown_bad_how(peer: Factory, dut: Factory) -> list[Any]:
    """shutdown(3) and (-1) on a connected socket: EINVAL; the connection is untouched."""
    lst, k, d = _conn(peer, dut)
    out = [tryit(lambda: d.shutdown(3)), tryit(lambda: d.shutdown(-1))]
    d.sendall(b"ok")
    out.append(tryit(lambda: k.recv(10)))
    close_all(d, k, lst)
    return out


def bind_any_then_names(peer: Factory, dut: Factory) -> list[Any]:
    """bind(("", 0)) then getsockname; a connect from it fills in the address; an
    explicitly bound port is kept by connect."""
    s = dut()
    s.bind(("", 0))
    out: list[Any] = [s.getsockname()[0]]
    lst = peer()
    lst.bind((PEER_IP, 0))
    lst.listen(2)
    s.settimeout(5)
    port = s.getsockname()[1]
    s.connect((PEER_IP, lst.getsockname()[1]))
    out += [s.getsockname() == (DUT_IP, port), s.getpeername() == lst.getsockname()]
    close_all(s, lst)
    return out


def after_detach_descriptor(peer: Factory, dut: Factory) -> list[Any]:
    """detach(): the descriptor carries the connection: a socket made from it is a
    SOCK_STREAM and carries its bytes both ways.  (Linux's is the AF_INET socket with the
    connection's names; ioth's is the application's AF_UNIX end, by design: see
    test_detach_hands_out_the_application_end.)"""
    lst, k, d = _conn(peer, dut)
    fd = d.detach()
    n = socket.socket(fileno=fd)
    n.settimeout(5)
    out: list[Any] = [("type", n.type)]
    k.sendall(b"hi")
    out.append(("recv", tryit(lambda: n.recv(10))))
    n.sendall(b"yo")
    out.append(("peer", tryit(lambda: k.recv(10))))
    close_all(n, k, lst)
    return out


def after_detach_object(peer: Factory, dut: Factory) -> list[Any]:
    """detach(): the socket object's own calls afterwards fail with EBADF (fileno -1)."""
    lst, k, d = _conn(peer, dut)
    fd = d.detach()
    out: list[Any] = [("fileno", d.fileno()), ("send", tryit(lambda: d.send(b"x"))),
                      ("recv", tryit(lambda: d.recv(1))),
                      ("getpeername", tryit(lambda: d.getpeername())),
                      ("getsockopt", tryit(lambda: d.getsockopt(socket.SOL_SOCKET,
                                                                socket.SO_TYPE))),
                      ("close", tryit(lambda: d.close()))]
    n = socket.socket(fileno=fd)
    n.settimeout(5)
    k.sendall(b"hi")
    out.append(("recv through the descriptor", tryit(lambda: n.recv(10))))
    close_all(n, k, lst)
    return out


SCENARIOS: list[Scenario] = [
    peek, peek_into, waitall_pieces, waitall_early_close, waitall_into_timeout,
    dontwait_and_sizes, empty_send_states, recv_timeout_then_usable,
    sendall_timeout_peer_not_reading, nonblocking_send_fills_up, accept_timeouts,
    misuse_connected, misuse_unconnected, bind_any_then_names, after_detach_descriptor,
    after_detach_object, recv_zero_without_data, connect_on_a_listener,
    shutdown_wakes_a_blocked_accept, connect_to_port_zero, recv_zero_unconnected,
    listen_without_bind, shutdown_bad_how]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))
def test_api_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)


def test_detach_hands_out_the_application_end(envs: Envs) -> None:
    """A documented difference (see ioth.sockets.stream): an ioth TCP socket's descriptor
    is the application's end of an AF_UNIX stream, so socket.socket(fileno=detach()) is an
    AF_UNIX socket (AF_UNIX names), where Linux's is the AF_INET TCP socket; the bytes and
    the end of stream are the connection's either way."""
    peer, dut = envs.get("ioth", False)
    lst, k, d = _conn(peer, dut)
    n = socket.socket(fileno=d.detach())
    try:
        n.settimeout(5)
        assert (n.family, n.type) == (socket.AF_UNIX, socket.SOCK_STREAM)
        k.sendall(b"in")
        assert n.recv(10) == b"in"
        n.sendall(b"out")
        k.settimeout(5)
        assert k.recv(10) == b"out"
        n.close()
        assert k.recv(10) == b""
    finally:
        close_all(n, k, lst)
