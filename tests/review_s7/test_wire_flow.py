"""Adversarial review (session 7): data flow on the wire, the kernel as the oracle.

Out-of-order data and SACK blocks (RFC 2018: the newest block first), D-SACK of duplicates
(RFC 2883), a receive window filled to zero, zero-window probes both ways and the window
update, keepalive probes both ways.  The DUT's buffer sizes, windows and timers are policy
(Linux: autotuned buffers, a 200 ms minimum RTO, its persist backoff): the scenarios compare
what a peer relies on (the window reaches zero and reopens, a probe comes and is answered,
the data all arrives), not the values.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Any

import pytest

from tests.review_s6.oracle import close_all, params
from tests.review_s7.rawpeer import (
    ACK,
    PSH,
    RST,
    Env,
    Envs,
    Flow,
    Scenario,
    Seg,
    read,
    read_all,
    run,
)

pytestmark = pytest.mark.interop

K = 1000


def blob(n: int) -> bytes:
    """``n`` recognisable bytes."""
    return bytes(i % 251 for i in range(n))


def sack_blocks(env: Env, v6: bool = False) -> list[Any]:
    """Segments 2 and 4 of four (1000 bytes each) come first: each draws an immediate
    duplicate ACK whose SACK blocks name what is held, the newest first; segment 1: the ACK
    moves to 2001 with the remaining block; segment 3: everything acknowledged, no block;
    the application reads the 4000 bytes in order."""
    lst, d, f, _ = env.accepted(v6=v6)
    data = blob(4 * K)
    out: list[Any] = []
    for i in (1, 3, 0, 2):
        f.send(ACK | PSH, seq=1 + i * K, data=data[i * K:(i + 1) * K])
        out.append(f.ask())
    f.nxt = 1 + 4 * K
    out.append(read_all(d, len(data)) == data)
    close_all(d, lst)
    return out


def sack_blocks_v6(env: Env) -> list[Any]:
    """:func:`sack_blocks` over IPv6."""
    return sack_blocks(env, v6=True)


def dsack_out_of_order(env: Env) -> list[Any]:
    """RFC 2883 4.1.2: a duplicate of a segment held out of order: the first block is the
    D-SACK of the duplicate, then the SACK block holding it."""
    lst, d, f, _ = env.accepted()
    f.send(ACK | PSH, seq=1 + K, data=blob(K))
    out: list[Any] = [f.ask()]
    f.send(ACK | PSH, seq=1 + K, data=blob(K))
    out.append(f.ask())
    close_all(d, lst)
    return out


def at(pos: int, n: int) -> bytes:
    """The ``n`` bytes of the peer's stream from relative sequence number ``pos`` on (the
    same bytes whenever sent again)."""
    return bytes((pos + i) % 251 for i in range(n))


def fill_window(f: Flow, limit: float = 8.0) -> tuple[bool, int]:
    """Send 1000-byte segments up to the DUT's advertised right edge again and again (the
    application reads nothing) until it advertises a zero window with everything sent
    acknowledged: (reached zero, bytes taken).  What the DUT drops (a kernel prunes its
    queue when the buffer's overhead is above its size) is sent again (go-back-N after a
    quiet 0.3 s)."""
    ack, wnd = f.rcv, None
    deadline = time.monotonic() + limit

    def note(segs: list[Seg]) -> None:
        nonlocal ack, wnd
        for s in segs:
            if s.flags & ACK:
                ack = max(ack, f._rel(s.ack, f.iss))
                wnd = s.window << f.their_ws
    note(f.recv(0.05))
    while time.monotonic() < deadline:
        edge = ack + (wnd if wnd is not None else 1 << 15)
        if f.nxt < edge:
            n = min(K, edge - f.nxt)
            f.data(at(f.nxt, n))
            note(f.recv(0))
            continue
        got = f.recv(0.3, until=bool, settle=0.05)
        note(got)
        if wnd == 0 and ack == f.nxt:
            return True, f.nxt - 1
        if not got and ack < f.nxt:
            f.nxt = ack  # (go back: what was not acknowledged is sent again)
    return False, f.nxt - 1


def zero_window_receiver(env: Env) -> list[Any]:
    """The application reads nothing; the peer fills the advertised window until the DUT
    advertises zero, having taken every byte sent (the window never shrank under data in
    flight); a zero-window probe (one byte at RCV.NXT): an ACK, window zero, the byte not
    taken; the application reads everything: a window update comes unasked; the probe
    byte is then taken.  (SO_RCVBUF 16384 on the listener: how much the DUT then takes is
    its policy, Linux about 16 kB, ioth more: its descriptor pair holds bytes too.)"""
    lst, d, f, _ = env.accepted(rcvbuf=16384)
    f.ecr = False
    zero, sent = fill_window(f)
    out: list[Any] = [zero]
    f.send(ACK | PSH, data=b"P")
    ans = f.recv(1.0, until=bool)
    out.append([re.sub(r"ack=\d+ ", "ack=RCV.NXT ", f.norm(s)) if f._rel(s.ack, f.iss) == f.nxt
                else f.norm(s) for s in ans])
    out.append(len(read_all(d, sent, 65536)) == sent)
    upd = f.recv(1.5, until=lambda segs: any(s.window for s in segs))
    out.append(any(s.window > 0 and s.flags == ACK for s in upd))
    f.data(b"P")
    out += [[re.sub(r"ack=\d+ ", "ack=RCV.NXT+1 ", a) for a in f.ask()], read(d)]
    close_all(d, lst)
    return out


def probe_kind(f: Flow, s: Seg) -> str:
    """A segment sent into a closed window, named: "probe" (RFC 9293 3.8.6.1's one byte at
    SND.UNA, or Linux's empty segment at SND.UNA - 1: both draw an ACK), else normalised."""
    rel = f._rel(s.seq, f.irs)
    if s.flags & ACK and not s.flags & RST and (
            (len(s.payload) == 1 and rel == 1) or (not s.payload and rel == 0)):
        return "probe"
    return f.norm(s)


def zero_window_sender(env: Env) -> list[Any]:
    """The peer advertises a zero window, the application writes 1000 bytes: nothing but
    zero-window probes within 1.5 s (RFC 9293 3.8.6.1; their form is the sender's
    choice); the peer answers them with a zero window, then opens it: the 1000 bytes come
    (the probe's byte included)."""
    lst, d, f, _ = env.accepted()
    f.send(ACK, window=0)
    time.sleep(0.2)  # (the ACK is in before the application writes)
    d.sendall(blob(K))
    probes = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        segs = f.recv(deadline - time.monotonic(), until=bool, settle=0.01)
        probes += [probe_kind(f, s) for s in segs]
        if segs:
            f.send(ACK, window=0)
    out: list[Any] = [sorted(set(probes))]
    f.send(ACK)
    seen = 0
    deadline = time.monotonic() + 2
    while f.rcv < 1 + K and time.monotonic() < deadline:
        seen += len(f.recv(0.5, until=bool, settle=0.02))
        f.send(ACK)
    out.append(f.rcv == 1 + K)
    close_all(d, lst)
    return out


def keepalive_answered(env: Env) -> list[Any]:
    """The peer's keepalive probes (RFC 1122 4.2.3.6): an empty segment at SND.NXT - 1, and
    one with a garbage byte there: each draws an ACK <SEQ=SND.NXT><ACK=RCV.NXT> (the
    second with a D-SACK of the byte); the application reads nothing.  (Echoed TSvals:
    see test_wire_established.duplicate_tsval_echo.)"""
    out: list[Any] = []
    for data in (b"", b"g"):
        lst, d, f, _ = env.accepted()
        f.ecr = False
        f.data(b"hello")
        out.append(f.ask())
        f.send(ACK, seq=f.nxt - 1, data=data)
        out += [f.ask(), read(d), read(d, 0.3)]
        close_all(d, lst)
    return out


def dut_keepalive(env: Env) -> list[Any]:
    """SO_KEEPALIVE with TCP_KEEPIDLE 1, TCP_KEEPINTVL 1, TCP_KEEPCNT 2 on an idle DUT
    connection: a probe after about 1 s (form: :func:`probe_kind`); answered, the next
    comes after another idle second; unanswered, a second probe, then the connection is
    reset (<SEQ=SND.NXT><CTL=RST,ACK>) and the application reads ETIMEDOUT."""
    lst, d, f, _ = env.accepted()
    d.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    d.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    d.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    d.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
    first = f.recv(2.5, until=bool, settle=0.05)
    out: list[Any] = [[probe_kind(f, s) for s in first]]
    f.send(ACK)
    rest = f.recv(6.0, until=lambda segs: any(s.flags & RST for s in segs), settle=0.05)
    out.append([probe_kind(f, s) for s in rest])
    out.append(read(d, 1))
    close_all(d, lst)
    return out


def pmtu_once(env: Env, lst: Any, v6: bool, src4: bytes | None = None) -> list[Any]:
    """One connection to listener ``lst`` (from the peer's ``src4`` when given): the DUT
    sends 6000 bytes (one flight: they fit its initial window), the first full-size
    segment draws "fragmentation needed" (MTU 1200) or "packet too big" (MTU 1280) as from
    a router that dropped the whole flight; the peer then acknowledges what comes:
    [the flight's largest segment, the first segment after the error fits the MTU, all
    later ones fit, everything arrived]."""
    limit = 1208 if v6 else 1148  # (the MTU less the IP, TCP and timestamps headers)
    f = Flow(env.wire, lst.getsockname()[1], v6)
    f.src4 = src4
    f.connect()
    d, _ = lst.accept()
    t = threading.Thread(target=d.sendall, args=(at(1, 6000),), daemon=True)
    t.start()
    flight = f.recv(2.0, until=lambda segs: sum(len(s.payload) for s in segs) >= 6000,
                    settle=0.1)
    big = [s for s in flight if s.payload]
    out: list[Any] = [max((len(s.payload) for s in big), default=0)]
    if big:
        env.wire.too_big(big[0], 1280 if v6 else 1200)
        f.rcv = 1  # (the router dropped the whole flight)
        sizes = []
        deadline = time.monotonic() + 4
        while f.rcv < 6001 and time.monotonic() < deadline:
            sizes += [len(s.payload) for s in f.recv(0.5, until=bool, settle=0.02)
                      if s.payload]
            f.send(ACK)
        out += [bool(sizes) and sizes[0] <= limit, max(sizes[1:], default=0) <= limit,
                f.rcv == 6001]
    t.join(2)
    close_all(d)
    return out


def path_mtu(env: Env) -> list[Any]:
    """Path MTU discovery (RFC 1191 / RFC 8201): :func:`pmtu_once` from sixteen fresh IPv4
    sources of the peer (the DUTs remember a path MTU per destination): each time the DUT
    sends everything again in segments that fit (1148 bytes of data with timestamps), the
    first resent one included (Linux re-cuts them at once, tcp_simple_retransmit), and all
    of it arrives.  (Sixteen times: ioth's first resent segment kept the old size in about
    one connection of three until cd360f7.)"""
    lst = env.listener()
    out: list[Any] = []
    for src in env.wire.aliases4:
        out.append(pmtu_once(env, lst, False, src))
    close_all(lst)
    return out


def path_mtu_v6(env: Env) -> list[Any]:
    """IPv6 path MTU discovery (packet too big, MTU 1280: 1208 bytes of data), once: every
    resent segment fits, the first one included, and everything arrives."""
    lst = env.listener(True)
    got = pmtu_once(env, lst, True)
    close_all(lst)
    return got


SCENARIOS: list[Scenario] = [
    sack_blocks, sack_blocks_v6, dsack_out_of_order, zero_window_receiver, zero_window_sender,
    keepalive_answered, dut_keepalive, path_mtu, path_mtu_v6]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_flow_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
