"""Adversarial review (session 7): the handshake on the wire, the kernel as the oracle.

The raw peer (:mod:`tests.review_s7.rawpeer`) opens connections to DUT listeners and
answers the DUT's own connects, with the corner cases of RFC 9293 3.10.7: options absent or
odd in the SYN, data on a SYN, unacceptable ACKs, RSTs and FINs in SYN-RECEIVED and
SYN-SENT, simultaneous open, and segments to closed or listening ports (the reset's exact
sequence and acknowledgment numbers).  The DUT's SYN-ACK window scale value and its windows
are policy (Linux derives them from its buffer sizes): only their presence is compared.
"""

from __future__ import annotations

import re
import select
import socket
import time
from typing import Any

import pytest

from tests.review_s6.oracle import close_all, params
from tests.review_s7.rawpeer import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Env,
    Envs,
    Flow,
    Scenario,
    read,
    run,
    syn_opts,
)

pytestmark = pytest.mark.interop


def connect_result(d: Any, wait: float = 3.0) -> Any:
    """How a non-blocking connect ended within ``wait`` s: 0, an errno name, or "pending"."""
    if not select.select([], [d], [], wait)[1]:
        return "pending"
    err = d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return err and __import__("errno").errorcode.get(err, err)


def flight(f: Flow, wait: float = 0.6) -> list[str]:
    """The distinct data segments (relative seq:len, retransmissions counted once) the DUT
    sends in ``wait`` s while the peer acknowledges nothing: what the peer's window lets
    through."""
    segs = {(f._rel(s.seq, f.irs), len(s.payload)) for s in f.recv(wait) if s.payload}
    return [f"{a}:{n}" for a, n in sorted(segs)]


def drain(f: Flow, total: int, wait: float = 3.0) -> list[Any]:
    """Acknowledge the DUT's data as it comes until ``total`` bytes are in (or ``wait`` s
    passed): [the largest segment, all came]; how the DUT cuts and paces its data (Nagle,
    its window use) is its own policy."""
    start = f.rcv
    biggest = 0
    deadline = time.monotonic() + wait
    while f.rcv - start < total and time.monotonic() < deadline:
        for s in f.recv(0.5, until=bool, settle=0.02):
            biggest = max(biggest, len(s.payload))
        f.send(ACK)
    return [biggest, f.rcv - start == total]


def nosyn(segs: list[str]) -> list[str]:
    """``segs`` without the DUT's (re)transmitted SYNs."""
    return [s for s in segs if not s.startswith("S ")]


def free_port(env: Env, v6: bool = False) -> int:
    """A DUT port nobody listens on (bound then closed)."""
    lst = env.listener(v6)
    port = int(lst.getsockname()[1])
    lst.close()
    return port


def synack_full_options(env: Env) -> list[Any]:
    """A SYN with MSS 1000, SACK-permitted, timestamps and window scale 2: the SYN-ACK has
    the DUT's MSS (1460: its MTU), SACK-permitted, timestamps (echoing the SYN's), a window
    scale; the DUT's data then comes in segments of at most 988 bytes (the peer's MSS,
    less the 12 bytes of the timestamps) and no more than the peer's scaled window (field
    250 << 2 = 1000 bytes) in flight.  (How the window is cut is policy: Linux sends two
    segments of half the largest window seen, tcp_bound_to_half_wnd.)"""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.window = 250
    out: list[Any] = [f.connect(opts=syn_opts(mss=1000, ws=2))]
    d, _ = lst.accept()
    d.sendall(b"z" * 5000)
    sent = flight(f)
    total = sum(int(x.split(":")[1]) for x in sent)
    biggest = max((int(x.split(":")[1]) for x in sent), default=0)
    out += [0 < total <= 1000, biggest <= 988, drain(f, 5000 - (f.rcv - 1))[1]]
    close_all(d, lst)
    return out


def syn_without_options(env: Env) -> list[Any]:
    """A SYN without any option (IPv4): the SYN-ACK has an MSS and nothing else; the DUT
    then sends 536-byte segments (RFC 9293 3.7.1's default MSS), no timestamps; out of
    order data draws a duplicate ACK without SACK blocks."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.ts_on = False
    f.window = 65535
    out: list[Any] = [f.connect(opts=b"")]
    d, _ = lst.accept()
    d.sendall(b"q" * 2000)
    out.append(drain(f, 2000))
    f.send(ACK)
    f.send(ACK | PSH, seq=f.nxt + 10, data=b"later")
    out.append(f.ask())
    close_all(d, lst)
    return out


def syn_without_options_v6(env: Env) -> list[Any]:
    """IPv6: a SYN without options: the SYN-ACK's MSS is 1440, the DUT's segments are of
    1220 bytes (RFC 8200's minimum MTU less the headers: Linux's IPv6 default MSS)."""
    lst = env.listener(v6=True)
    f = Flow(env.wire, lst.getsockname()[1], v6=True)
    f.ts_on = False
    f.window = 65535
    out: list[Any] = [f.connect(opts=b"")]
    d, _ = lst.accept()
    d.sendall(b"q" * 3000)
    out.append(drain(f, 3000))
    close_all(d, lst)
    return out


def syn_mss_only(env: Env) -> list[Any]:
    """A SYN with only an MSS of 65535: the DUT's segments are limited by its own MTU
    (1460 bytes, no timestamps); its window is unscaled."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.ts_on = False
    f.window = 65535
    out: list[Any] = [f.connect(opts=syn_opts(mss=65535, sack=False, ts=None, ws=None))]
    d, _ = lst.accept()
    d.sendall(b"m" * 4000)
    out.append(drain(f, 4000))
    close_all(d, lst)
    return out


def data_on_syn(env: Env) -> list[Any]:
    """Data on a SYN (no Fast Open): the SYN-ACK acknowledges the SYN only (the data is not
    taken); the peer sends it again after the handshake and it is read once."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.syn(data=b"early")
    out: list[Any] = [f.ask()]
    f.send(ACK)
    d, _ = lst.accept()
    f.data(b"early")
    out += [f.ask(), read(d)]
    close_all(d, lst)
    return out


def closed_port_resets(env: Env) -> list[Any]:
    """RFC 9293 3.10.7.1 (CLOSED): a SYN: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> (the SYN
    counts, its data too); a SYN-ACK, an ACK, data with ACK: <SEQ=SEG.ACK><CTL=RST>; a FIN
    without ACK, a segment without flags: RST,ACK acknowledging them; a RST: nothing."""
    port = free_port(env)
    out: list[Any] = []
    for flags, data, ack in ((SYN, b"", 0), (SYN, b"abc", 0), (SYN | ACK, b"", 777),
                             (ACK, b"", 888), (ACK | PSH, b"xy", 999), (FIN, b"", 0),
                             (0, b"", 0), (0, b"abcd", 0), (RST, b"", 0), (RST | ACK, b"", 5)):
        f = Flow(env.wire, port)
        f.send(flags, seq=7, raw_ack=ack, data=data, opts=b"")
        out.append(f.quiet(0.3) if flags & RST else f.ask(1.0))
    return out


def closed_port_v6(env: Env) -> list[Any]:
    """IPv6, a closed port: a SYN (RST,ACK), an ACK (RST with SEQ=SEG.ACK)."""
    port = free_port(env, v6=True)
    out: list[Any] = []
    for flags, ack in ((SYN, 0), (ACK, 4242)):
        f = Flow(env.wire, port, v6=True)
        f.send(flags, seq=7, raw_ack=ack, opts=b"")
        out.append(f.ask(1.0))
    return out


def listener_non_syn(env: Env) -> list[Any]:
    """RFC 9293 3.10.7.2 (LISTEN): an ACK or a SYN-ACK: <SEQ=SEG.ACK><CTL=RST>; a RST, a
    FIN or data without ACK, a segment without flags: dropped silently; the listener still
    accepts."""
    lst = env.listener()
    port = lst.getsockname()[1]
    out: list[Any] = []
    for flags, data, ack in ((ACK, b"", 1234), (SYN | ACK, b"", 4321), (ACK | PSH, b"d", 55),
                             (RST, b"", 0), (FIN, b"", 0), (PSH, b"data", 0), (0, b"", 0)):
        f = Flow(env.wire, port)
        f.send(flags, seq=7, raw_ack=ack, data=data, opts=b"")
        out.append(f.ask(1.0) if flags & ACK else f.quiet(0.3))
    f = Flow(env.wire, port)
    out.append(f.connect())
    d, _ = lst.accept()
    close_all(d, lst)
    return out


def bad_ack_in_syn_received(env: Env) -> list[Any]:
    """RFC 9293 3.10.7.4 (SYN-RECEIVED, unacceptable ACK): an ACK beyond the SYN-ACK, and
    one acknowledging the ISN itself: <SEQ=SEG.ACK><CTL=RST> each; the right ACK then
    completes the handshake."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.syn()
    out: list[Any] = [f.ask()]
    f.send(ACK, ack=1000)
    out.append(f.ask())
    f.send(ACK, ack=0)
    out.append(f.ask())
    f.send(ACK)
    d, _ = lst.accept()
    f.data(b"ok")
    out += [f.ask(), read(d)]
    close_all(d, lst)
    return out


def rst_in_syn_received(env: Env) -> list[Any]:
    """A RST to the SYN-ACK (at the SYN-ACK's acknowledgment, and inside the window but not
    exact): at the exact place the half-open connection is gone silently, and the ACK that
    would have completed it draws <SEQ=SEG.ACK><CTL=RST>; inside the window: a challenge
    ACK (RFC 5961 3.2), the ACK completes the connection.  (That ACK echoes the SYN-ACK's
    TSval: Linux takes an echo of its challenge ACK's for an invalid TSecr.)"""
    out: list[Any] = []
    lst = env.listener()
    for where in (0, 100):
        f = Flow(env.wire, lst.getsockname()[1])
        f.syn()
        out.append(f.ask())
        echo = f.their_ts
        f.send(RST, seq=f.nxt + where)
        out += [f.quiet(0.3), env.states(f)]
        f.their_ts = echo
        f.send(ACK)
        out.append(f.ask(1.0))
    lst.settimeout(0.5)
    out += [read_accept(lst), read_accept(lst)]
    close_all(lst)
    return out


def read_accept(lst: Any) -> Any:
    """accept()'s outcome: "accepted" or the exception's name."""
    try:
        d, _ = lst.accept()
    except OSError as exc:
        return type(exc).__name__
    d.close()
    return "accepted"


def syn_again_in_syn_received(env: Env) -> list[Any]:
    """SYN-RECEIVED: the same SYN again (the SYN-ACK was lost): the SYN-ACK again, same
    ISN; a SYN with another sequence number in the window: what the DUT does with the
    half-open connection."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.ecr = False
    f.syn()
    out: list[Any] = [f.ask()]
    f.tsval -= 1
    f.syn()
    out.append(f.ask())
    f.send(SYN, seq=50, opts=syn_opts(ts=(f.tsval + 1, 0)))
    out += [f.ask(1.0), env.states(f)]
    close_all(lst)
    return out


def fin_in_syn_received(env: Env) -> list[Any]:
    """SYN-RECEIVED: a FIN without ACK is dropped (RFC 9293: no ACK, drop); a FIN with the
    right ACK completes the handshake and is acknowledged; the application accepts and
    reads end of file."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.syn()
    out: list[Any] = [f.ask()]
    f.send(FIN)
    out += [f.quiet(0.3), env.states(f)]
    f.send(FIN | ACK)
    f.nxt += 1
    out.append(f.ask())
    d, _ = lst.accept()
    out += [read(d), env.states(f)]
    close_all(d, lst)
    return out


def syn_sent_answers(env: Env) -> list[Any]:
    """The DUT connects: its SYN's options; a SYN-ACK acknowledging something else:
    <SEQ=SEG.ACK><CTL=RST>, still connecting; a RST without ACK, and one with an
    unacceptable ACK: ignored; the right SYN-ACK: the handshake's ACK, connected.  (After
    that reset Linux sends its SYN again at once (TCP_TIMEOUT_MIN, "previous FIN/ACK or
    RST/ACK might be ignored"), ioth at its retransmission timeout: policy, SYNs left out.)"""
    d, f, syn = env.dial()
    out: list[Any] = [syn]
    f.send(SYN | ACK, seq=0, ack=500, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)),
           window=65535)
    out.append(nosyn(f.ask()))
    f.send(RST, seq=1, opts=b"")
    f.send(RST | ACK, seq=1, ack=999, opts=b"")
    out += [nosyn(f.quiet(0.3)), connect_result(d, 0)]
    f.tsval += 1
    f.send(SYN | ACK, seq=0, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
    out += [f.ask(), connect_result(d)]
    close_all(d)
    return out


def syn_sent_refused(env: Env) -> list[Any]:
    """The DUT connects, the peer answers RST,ACK acknowledging the SYN: ECONNREFUSED,
    nothing sent."""
    d, f, _ = env.dial()
    f.send(RST | ACK, seq=0, opts=b"")
    out: list[Any] = [f.quiet(0.3), connect_result(d)]
    close_all(d)
    return out


def syn_sent_plain_synack(env: Env) -> list[Any]:
    """The DUT connects, the peer's SYN-ACK has no option: the DUT's ACK has no timestamp,
    its data comes in 536-byte segments."""
    d, f, _ = env.dial()
    f.ts_on = False
    f.window = 65535
    f.send(SYN | ACK, seq=0, opts=b"", window=65535)
    out: list[Any] = [f.ask(), connect_result(d)]
    d.setblocking(True)
    d.sendall(b"p" * 1200)
    out.append(drain(f, 1200))
    close_all(d)
    return out


def simultaneous_open(env: Env) -> list[Any]:
    """RFC 9293 3.5 simultaneous open: the DUT's SYN crosses the peer's SYN: the DUT answers
    SYN,ACK (its ISN again); the peer's SYN,ACK then (RFC 9293 figure 8): connected, an
    ACK; data flows.  (Linux puts a D-SACK block of the SYN on that ACK: left out.)"""
    d, f, _ = env.dial()
    f.ecr = False
    f.tsval += 1
    f.send(SYN, seq=0, opts=syn_opts(ts=(f.tsval, 0)), window=65535)
    out: list[Any] = [f.ask()]
    f.tsval += 1
    f.send(SYN | ACK, seq=0, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
    out += [[re.sub(r" sack=\S+", "", a) for a in f.ask(1.0)], connect_result(d)]
    f.data(b"both")
    d.setblocking(True)
    out += [f.ask(), read(d)]
    d.sendall(b"back")
    out.append(f.ask())
    close_all(d)
    return out


def syn_sent_v6(env: Env) -> list[Any]:
    """IPv6: the DUT's SYN (MSS 1440), the handshake."""
    d, f, syn = env.dial(v6=True)
    f.send(SYN | ACK, seq=0, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
    out: list[Any] = [syn, f.ask(), connect_result(d)]
    close_all(d)
    return out


SCENARIOS: list[Scenario] = [
    synack_full_options, syn_without_options, syn_without_options_v6, syn_mss_only,
    data_on_syn, closed_port_resets, closed_port_v6, listener_non_syn,
    bad_ack_in_syn_received, rst_in_syn_received, syn_again_in_syn_received,
    fin_in_syn_received, syn_sent_answers, syn_sent_refused, syn_sent_plain_synack,
    simultaneous_open, syn_sent_v6]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_handshake_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
