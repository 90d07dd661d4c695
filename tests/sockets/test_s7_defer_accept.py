"""Session 7: TCP_DEFER_ACCEPT has its effect (review s6 effects defer_accept_effect).

Linux (tcp_check_req, reqsk_timer_handler): a handshake-completing ACK without data is
dropped while the request has retransmitted its SYN-ACK fewer times than the option's value
(seconds rounded up to retransmissions, 1 s doubling), so the connection stays half-open
until its first data (or FIN) arrives, or until the peer answers the SYN-ACK retransmitted
at the end of the period; then it is accepted.  Here: the TCP layer's half of it on two
layers back to back (a virtual clock), the socket option's readback and effect against the
kernel (a namespace) as the oracle."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from ioth.stack.tcp.connection import State
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, RST, SYN, decode
from tests.review_s5.test_review_oracle import DUT_IP
from tests.review_s6.oracle import Envs, close_all, mask, module_envs, tryit
from tests.stack.harness import ip
from tests.stack.tcp.layerpair import LayerPair

CA, SA = ip("198.18.0.1"), ip("198.18.0.2")


class _Pair(LayerPair):
    """Client ``a``, server ``b``; records the server's SYN-ACKs and RSTs; ``mute``: the
    client's segments are lost."""

    def __init__(self) -> None:
        super().__init__(TcpPolicy())
        self.synacks = 0
        self.resets = 0
        self.mute = False

    def seen(self, src: Any, data: bytes) -> None:
        _, _, seg = decode(data)
        if src is self.b and seg.flags & (SYN | ACK) == SYN | ACK:
            self.synacks += 1
        if src is self.b and seg.flags & RST:
            self.resets += 1

    def after_round(self) -> None:
        if self.mute:
            self.a.outbox.clear()

    def run(self) -> None:
        self.after_round()
        super().run()

    def until(self, t: float) -> None:
        """Advance the clock to ``t`` running the timers (and the segments they send)."""
        while True:
            due = [d for d in (self.a.poll_at(), self.b.poll_at()) if d is not None]
            if not due or min(due) > t:
                break
            self.now = max(self.now, min(due))
            for layer in (self.a, self.b):
                layer.on_timer(self.now)
            self.run()
        self.now = t


def _start(defer: int) -> tuple[_Pair, Any, Any]:
    p = _Pair()
    lst = p.b.listen(80)
    lst.set_defer_accept(defer)
    c = p.a.connect(CA, SA, 80, p.now)
    p.run()
    return p, lst, c


def test_silent_client_is_accepted_after_the_period() -> None:
    """Defer 2 retransmissions (Linux's 2 or 3 s): the client is established at once, the
    server's connection stays half-open through the first SYN-ACK retransmission (its ACK
    dropped again), and joins the accept queue with the ACK of the second (t0 + 3 s)."""
    p, lst, c = _start(2)
    t0 = p.now
    assert c.state is State.ESTABLISHED
    assert lst.accept() is None and lst.defer_dropped == 1 and len(lst.syn_queue) == 1
    p.until(t0 + 2.5)
    assert lst.accept() is None and lst.defer_dropped == 2 and p.synacks == 2
    p.until(t0 + 3.5)
    s = lst.accept()
    assert s is not None and s.state is State.ESTABLISHED and p.synacks == 3
    s.send(b"hello")
    p.b.flush(s, p.now)
    p.run()
    assert c.recv(10) == b"hello"


@pytest.mark.parametrize("how", ["data", "fin"])
def test_first_data_or_fin_completes_the_handshake(how: str) -> None:
    """The client's first data (or its FIN) is accepted at once, the data readable."""
    p, lst, c = _start(5)
    assert lst.accept() is None
    if how == "data":
        c.send(b"GET /")
    else:
        c.close()
    p.a.flush(c, p.now)
    p.run()
    s = lst.accept()
    assert s is not None
    if how == "data":
        assert s.state is State.ESTABLISHED and s.recv(10) == b"GET /"
    else:
        assert s.state is State.CLOSE_WAIT and s.eof
    assert p.synacks == 1 and p.resets == 0


def test_without_the_option_the_ack_completes_it() -> None:
    _, lst, _ = _start(0)
    assert lst.accept() is not None and lst.defer_dropped == 0


def test_client_gone_the_request_ends_silently() -> None:
    """A client whose segments no longer arrive: the half-open connection ends after its
    SYN-ACK retransmissions without a reset (Linux drops the request)."""
    p, lst, _ = _start(1)
    p.mute = True
    p.until(p.now + 200)
    assert lst.accept() is None and not lst.syn_queue and p.resets == 0
    assert p.synacks == 1 + TcpPolicy().synack_retries


# -- the socket option, against the kernel ---------------------------------------------------

envs = module_envs(Envs)


def _readback(dut: Any) -> list[Any]:
    s = dut(socket.AF_INET)
    out = []
    for secs in (-1, 0, 1, 2, 3, 4, 5, 7, 8, 30, 31, 32, 1000):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, secs)
        out.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT))
    close_all(s)
    return out


def _silent_then(peer: Any, dut: Any, close: bool) -> list[Any]:
    """TCP_DEFER_ACCEPT 1 (one retransmission, 1 s): a silent client is not accepted at
    first, then is (after the SYN-ACK retransmission), without data; or (``close``) its
    FIN gets it accepted at once, at end of stream."""
    lst = dut(socket.AF_INET)
    lst.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    lst.bind((DUT_IP, 0))
    lst.listen(4)
    k = peer(socket.AF_INET)
    k.settimeout(5)
    k.connect((DUT_IP, lst.getsockname()[1]))
    time.sleep(0.3)
    out: list[Any] = [mask(lst)]
    if close:
        k.shutdown(socket.SHUT_WR)
    lst.settimeout(4)
    a = tryit(lambda: lst.accept())
    out.append(type(a).__name__)
    if isinstance(a, tuple):
        a[0].settimeout(0.3 if not close else 2)
        out.append(tryit(lambda: a[0].recv(10)))
        if not close:
            k.sendall(b"late")
            a[0].settimeout(2)
            out.append(tryit(lambda: a[0].recv(10)))
        close_all(a[0])
    close_all(k, lst)
    return out


@pytest.mark.interop
@pytest.mark.parametrize("scenario", ["readback", "silent", "fin"])
def test_option_as_the_kernel(envs: Envs, scenario: str) -> None:
    """Readback (seconds rounded up to whole retransmissions) and effect as the kernel's."""
    def run(kind: str) -> list[Any]:
        peer, dut = envs.get(kind, False)
        if scenario == "readback":
            return _readback(dut)
        return _silent_then(peer, dut, scenario == "fin")
    assert run("ioth") == run("kernel")
