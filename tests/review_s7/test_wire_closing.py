"""Adversarial review (session 7): the closing states on the wire, the kernel as the oracle.

FIN-WAIT-1, FIN-WAIT-2 (after close(), and after shutdown(SHUT_WR)), CLOSING, CLOSE-WAIT,
LAST-ACK and TIME-WAIT, each given what the raw peer (:mod:`tests.review_s7.rawpeer`)
crafts: data after a FIN, FINs again, resets, and new SYNs on a 4-tuple in TIME-WAIT (RFC
6191: a higher sequence number or a newer timestamp reopens it).  The ISN a reopened
connection gets is policy (Linux: the old SND.NXT + 65537): new connections are normalised
against their own ISN.
"""

from __future__ import annotations

import socket
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


def wait_state(env: Env, f: Flow, state: str) -> list[str]:
    """Wait (up to 3 s) until the DUT holds flow ``f`` in ``state`` ("gone": not at all);
    its states then."""
    want = [] if state == "gone" else [state]
    try:
        env.dut.wait_states(lambda st: st == want, f.dport, f.sport, state, timeout=3)
    except BaseException:  # (pytest.fail: the states are the observation)
        pass
    return env.states(f)


def peer_fin(env: Env) -> tuple[Any, Any, Flow, list[Any]]:
    """A connection whose peer has sent its FIN (the DUT in CLOSE-WAIT, EOF read)."""
    lst, d, f, _ = env.accepted()
    f.data(b"", flags=FIN | ACK)
    return lst, d, f, [f.ask(), read(d), wait_state(env, f, "CLOSE-WAIT")]


def dut_fin(env: Env, how: str) -> tuple[Any, Any, Flow, list[Any]]:
    """A connection whose DUT end closed (``how`` "close" or "shutdown"): its FIN seen."""
    lst, d, f, _ = env.accepted()
    if how == "close":
        d.close()
    else:
        d.shutdown(socket.SHUT_WR)
    return lst, d, f, [f.ask()]


def close_wait_segments(env: Env) -> list[Any]:
    """CLOSE-WAIT: the peer's FIN again (an old duplicate): an ACK; the application still
    sends, and the peer's ACK of it is taken.  (Echoed TSvals and the D-SACK of the FIN:
    see :func:`duplicate_fin`.)"""
    lst, d, f, out = peer_fin(env)
    f.ecr = f.sacks = False
    f.send(FIN | ACK, seq=f.nxt - 1)
    out.append(f.ask())
    d.sendall(b"still")
    out.append(f.ask())
    f.send(ACK)
    out += [f.quiet(0.3), read(d, 0.3), env.states(f)]
    close_all(d, lst)
    return out


def close_wait_data(env: Env) -> list[Any]:
    """CLOSE-WAIT: data after the peer's FIN (at RCV.NXT, in the window): RFC 9293
    3.10.7.4 seventh, "ignore the segment text"; Linux drops it silently."""
    lst, d, f, out = peer_fin(env)
    f.send(ACK | PSH, data=b"late")
    out += [f.quiet(0.4), wait_state(env, f, "CLOSE-WAIT"), read(d, 0.3)]
    close_all(d, lst)
    return out


def duplicate_fin(env: Env) -> list[Any]:
    """The peer's FIN again in CLOSE-WAIT: the ACK; Linux puts a D-SACK block of the FIN
    on it (tcp_send_dupack: the duplicate's sequence space, the FIN's) and echoes the
    duplicate's TSval (RFC 1323's rule; see test_wire_established.duplicate_tsval_echo)."""
    lst, d, f, out = peer_fin(env)
    f.ecr = False
    f.send(FIN | ACK, seq=f.nxt - 1)
    out.append(f.ask())
    close_all(d, lst)
    return out


def last_ack_segments(env: Env) -> list[Any]:
    """LAST-ACK: the peer's FIN again: an ACK; an ACK short of the DUT's FIN: nothing, still
    LAST-ACK; the ACK of the FIN: the connection is gone; a late ACK then: a reset from the
    listener's port (<SEQ=SEG.ACK><CTL=RST>).  (Echoed TSvals, D-SACK of the FIN: see
    :func:`duplicate_fin`.)"""
    lst, d, f, out = peer_fin(env)
    f.ecr = f.sacks = False
    d.close()
    out.append(f.ask())
    f.send(FIN | ACK, seq=f.nxt - 1, ack=f.rcv - 1)
    out.append(f.ask())
    f.send(ACK, ack=f.rcv - 1)
    out += [f.quiet(0.3), env.states(f)]
    f.send(ACK)
    out += [f.quiet(0.3), wait_state(env, f, "gone")]
    f.send(ACK)
    out.append(f.ask(1.0))
    close_all(lst)
    return out


def fin_wait_1_segments(env: Env) -> list[Any]:
    """FIN-WAIT-1 after shutdown(SHUT_WR): the peer's data (not acking the FIN) is taken
    and acknowledged, the application reads it; after close(): the same data draws a reset
    (RFC 9293 3.10.4 / RFC 1122 4.2.2.13: nobody will read it), the connection is gone."""
    out: list[Any] = []
    for how in ("shutdown", "close"):
        lst, d, f, o = dut_fin(env, how)
        f.send(ACK | PSH, data=b"more", ack=f.rcv - 1)
        f.nxt += 4
        out += [*o, f.ask()]
        if how == "shutdown":
            out.append(read(d))
        out.append(wait_state(env, f, "gone" if how == "close" else "FIN-WAIT-1"))
        close_all(d, lst)
    return out


def fin_wait_2_segments(env: Env) -> list[Any]:
    """FIN-WAIT-2 (the DUT's FIN acknowledged): after shutdown(SHUT_WR), data is taken and
    read, the peer's FIN acknowledged (TIME-WAIT); after close(), data draws a reset; a
    RST in FIN-WAIT-2 ends it silently."""
    out: list[Any] = []
    for how in ("shutdown", "close", "rst"):
        lst, d, f, o = dut_fin(env, "shutdown" if how == "shutdown" else "close")
        f.send(ACK)
        out += [*o, wait_state(env, f, "FIN-WAIT-2")]
        if how == "rst":
            f.send(RST)
            out += [f.quiet(0.3), wait_state(env, f, "gone")]
        else:
            f.data(b"tail")
            out.append(f.ask())
            if how == "shutdown":
                out.append(read(d))
                f.data(b"", flags=FIN | ACK)
                out += [f.ask(), read(d), wait_state(env, f, "TIME-WAIT")]
            else:
                out.append(wait_state(env, f, "gone"))
        close_all(d, lst)
    return out


def closing_state(env: Env) -> list[Any]:
    """Simultaneous close (RFC 9293 figure 13): the DUT's FIN crosses the peer's (which does
    not acknowledge it): an ACK of the peer's FIN (CLOSING); the ACK of the DUT's FIN:
    TIME-WAIT."""
    lst, d, f, out = dut_fin(env, "shutdown")
    f.send(FIN | ACK, ack=f.rcv - 1)
    f.nxt += 1
    out += [f.ask(), wait_state(env, f, "CLOSING")]
    f.send(ACK)
    out += [f.quiet(0.3), wait_state(env, f, "TIME-WAIT"), read(d)]
    close_all(d, lst)
    return out


def time_wait(env: Env) -> tuple[Any, Flow, list[Any]]:
    """A DUT listener's accepted connection in TIME-WAIT (the DUT closed first, the peer's
    FIN acknowledged): (the listener, the flow, observations)."""
    lst, _, f, out = dut_fin(env, "close")
    f.data(b"", flags=FIN | ACK)
    out.append(f.ask())
    out.append(wait_state(env, f, "TIME-WAIT"))
    return lst, f, out


def time_wait_segments(env: Env) -> list[Any]:
    """TIME-WAIT: the peer's FIN again: the ACK again; data: an ACK (nothing is taken); a
    RST: Linux ends the TIME-WAIT (RFC 1337's hazard, net.ipv4.tcp_rfc1337 = 0).  (The
    ACK of the data echoes: Linux the TSval of the last bare ACK, ioth the data's: left
    out, harmless.)"""
    lst, f, out = time_wait(env)
    f.ecr = False
    f.send(FIN | ACK, seq=f.nxt - 1)
    out.append(f.ask())
    f.send(ACK | PSH, data=b"zombie")
    out += [f.ask(), env.states(f)]
    f.send(RST)
    out += [f.quiet(0.3), wait_state(env, f, "gone")]
    close_all(lst)
    return out


def reopen(env: Env, f: Flow, lst: Any, seq: int, ts: int | None) -> list[Any]:
    """A new SYN on TIME-WAIT flow ``f``'s 4-tuple, ``seq`` relative to the old ISN,
    TSval ``ts`` (None: no timestamps): the answer (a SYN-ACK normalised against the new
    connection, anything else against the old), and whether the listener accepts."""
    g = Flow(env.wire, f.dport, f.v6, sport=f.sport, iss=(f.iss + seq) & 0xFFFFFFFF)
    g.ts_on = ts is not None
    g.tsval = ts or 0
    g.send(SYN, seq=0, window=65535,
           opts=syn_opts(ts=None if ts is None else (ts, 0)))
    segs = g.recv(2.0, until=bool)
    out: list[Any] = [[g.norm(s) if s.flags & SYN else f.norm(s) for s in segs]]
    if segs and segs[0].flags & SYN:
        g.send(ACK)
        lst.settimeout(2)
        d, _ = lst.accept()
        g.data(b"again")
        out += [g.ask(), read(d)]
        close_all(d)
    return out


def time_wait_new_syn(env: Env) -> list[Any]:
    """RFC 9293 3.6.1 and RFC 6191: a new SYN on a 4-tuple in TIME-WAIT: with a higher
    sequence number (and a newer TSval, or none), or a lower one but a newer TSval: a new
    connection (SYN-ACK, accepted); a lower one with an older TSval, or without
    timestamps: the TIME-WAIT's ACK, nothing accepted."""
    out: list[Any] = []
    for seq, ts in ((100_000, 10_000), (100_000, None), (-100_000, 10_000), (-100_000, 50),
                    (-100_000, None)):
        lst, f, o = time_wait(env)
        out += o + reopen(env, f, lst, seq, ts)
        close_all(lst)
    return out


def client_time_wait(env: Env) -> list[Any]:
    """The DUT connected and closed first: TIME-WAIT on its ephemeral port; the peer's FIN
    again draws the ACK again; a new SYN from the peer (no listener) with a higher sequence
    number and newer TSval: a reset (<SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>) or the
    TIME-WAIT's ACK."""
    d, f, _ = env.dial()
    f.send(SYN | ACK, seq=0, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
    out: list[Any] = [f.ask()]
    d.setblocking(True)
    d.close()
    out.append(f.ask())
    f.data(b"", flags=FIN | ACK)
    out += [f.ask(), wait_state(env, f, "TIME-WAIT")]
    f.send(FIN | ACK, seq=f.nxt - 1)
    out.append(f.ask())
    f.send(SYN, seq=f.nxt + 100_000, opts=syn_opts(ts=(f.tsval + 10_000, 0)))
    out.append(f.ask(1.0))
    return out


def time_wait_v6(env: Env) -> list[Any]:
    """IPv6: TIME-WAIT after the DUT's close, the FIN again: the ACK again."""
    lst, d, f, _ = env.accepted(v6=True)
    d.close()
    out: list[Any] = [f.ask()]
    f.data(b"", flags=FIN | ACK)
    out += [f.ask(), wait_state(env, f, "TIME-WAIT")]
    f.send(FIN | ACK, seq=f.nxt - 1)
    out.append(f.ask())
    close_all(lst)
    return out


SCENARIOS: list[Scenario] = [
    close_wait_segments, close_wait_data, duplicate_fin, last_ack_segments,
    fin_wait_1_segments, fin_wait_2_segments, closing_state, time_wait_segments,
    time_wait_new_syn, client_time_wait, time_wait_v6]
BUGS: dict[Scenario, str] = {
}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_closing_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
