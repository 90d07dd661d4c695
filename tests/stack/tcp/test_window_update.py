"""The receiver's pure window update after a read follows Linux's rule (output.LINUX_WINDOW_UPDATE,
tcp_cleanup_rbuf): the first small read of an accepted connection (64 KiB advertised in the
SYN-ACK against a 1 MiB buffer) sends none (9 frames per request/response connection instead of
10); a window the sender filled reopens at once."""

from __future__ import annotations

import pytest

from ioth.stack.tcp import input as input_mod
from ioth.stack.tcp import output as output_mod
from ioth.stack.tcp.connection import State
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import ACK, decode
from tests.stack.tcp.harness import Link


def _cps(on: bool) -> tuple[int, bool]:
    """One connection as in the cps benchmark: frames on the wire, and whether the server's
    read alone owed a segment at once."""
    output_mod.LINUX_WINDOW_UPDATE = on
    link = Link(seed=2, policy=TcpPolicy(nodelay=True, time_wait=1.0))
    frames: list[bytes] = []
    link.tap = lambda src, dst, data: frames.append(data) is None
    listener = link.b.listen(80)
    c = link.a.connect(link.addr_a, link.addr_b, 80, link.now)
    link.run_until(lambda: bool(listener.accept_queue) and c.state is State.ESTABLISHED)
    s = listener.accept()
    assert s is not None
    c.send(b"q" * 64)
    link.a.flush(c, link.now)
    link.run_until(lambda: s.recv_available == 64)
    assert s.recv(100) == b"q" * 64
    owed = s.poll_at() == 0.0
    if owed:  # as the socket layer does after moving received bytes to the application
        link.b.flush(s, link.now)
    s.send(b"r" * 64)
    link.b.flush(s, link.now)
    link.run_until(lambda: c.recv_available == 64)
    assert c.recv(100) == b"r" * 64
    c.close()
    link.a.flush(c, link.now)
    link.run_until(lambda: s.state is State.CLOSE_WAIT)
    s.close()
    link.b.flush(s, link.now)
    link.run_until(lambda: s.state is State.CLOSED and c.state is State.CLOSED, limit=5.0)
    return len(frames), owed


@pytest.fixture(autouse=True)
def _restore() -> object:
    saved = output_mod.LINUX_WINDOW_UPDATE
    yield None
    output_mod.LINUX_WINDOW_UPDATE = saved


def test_first_small_read_sends_no_window_update(monkeypatch: pytest.MonkeyPatch) -> None:
    # the ACK of the client's FIN rides on the server's FIN (input.DELAYED_FIN_ACK, as Linux)
    assert _cps(True) == (8, False)
    assert _cps(False) == (9, True)
    monkeypatch.setattr(input_mod, "DELAYED_FIN_ACK", False)
    assert _cps(True) == (9, False)
    assert _cps(False) == (10, True)


@pytest.mark.parametrize("on", [True, False])
def test_a_filled_window_reopens_at_once(on: bool) -> None:
    output_mod.LINUX_WINDOW_UPDATE = on
    link = Link(seed=3, policy=TcpPolicy(nodelay=True, recv_buffer=65536, time_wait=1.0))
    sent: list[bytes] = []
    link.tap = lambda src, dst, data: (src != link.addr_b or sent.append(data) is None)
    c, s = link.connect()
    data = b"z" * 300_000
    off = 0

    def pump() -> None:
        nonlocal off
        if off < len(data) and c.send_space:
            off += c.send(data[off:off + 65536])
            link.a.flush(c, link.now)

    # the server does not read: the client fills the window and stalls (persist)
    link.run_until(lambda: s.recv_available >= 60_000, limit=5.0, pump=pump)
    last = decode(sent[-1])[2]
    assert last.window * (1 << s.rcv_wscale) < 8192  # (almost) closed
    n = len(sent)
    got = s.recv(1 << 20)
    assert len(got) >= 60_000
    assert s.poll_at() == 0.0  # the update is owed now
    link.b.flush(s, link.now)
    update = decode(sent[n])[2]
    assert update.flags == ACK and not update.payload
    assert update.window << s.rcv_wscale >= 60_000
