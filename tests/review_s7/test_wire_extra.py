"""Adversarial review (session 7): more handshake edges, the kernel as the oracle.

A SYN-ACK carrying data or a FIN (RFC 9293 3.10.7.3: the text is processed once the
connection is established; Linux drops it, the peer sends it again), segments without SYN in
SYN-SENT, the handshake's last ACK carrying data (in order and out of order), ECN flags.
ioth has no ECN: a SYN asking for it (ECE+CWR) gets a plain SYN-ACK from ioth and one with
ECE from Linux (net.ipv4.tcp_ecn = 2: on when asked), both valid, so ECE is left out there.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.review_s6.oracle import close_all, params
from tests.review_s7.rawpeer import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    SYN,
    Env,
    Envs,
    Flow,
    Scenario,
    read,
    run,
    syn_opts,
)
from tests.review_s7.test_wire_handshake import connect_result

pytestmark = pytest.mark.interop


def synack_with_text(env: Env) -> list[Any]:
    """The DUT connects; the SYN-ACK carries 5 bytes (then, on a second connection, the
    bytes and a FIN): what the DUT's ACK acknowledges and what the application reads; the
    peer then sends the bytes (and FIN) again as a peer whose text was not acknowledged
    does."""
    out: list[Any] = []
    for fin in (0, FIN):
        d, f, _ = env.dial()
        f.ecr = False
        f.send(SYN | ACK | fin, seq=0, data=b"early",
               opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
        out += [f.ask(), connect_result(d)]
        d.setblocking(True)
        f.send(ACK | PSH | fin, seq=1, data=b"early")
        out += [f.ask(), read(d, 1), read(d, 0.3)]
        close_all(d)
    return out


def syn_sent_without_syn(env: Env) -> list[Any]:
    """SYN-SENT (RFC 9293 3.10.7.3): an ACK acknowledging the SYN but without SYN, and a FIN
    with it: dropped (fifth: neither SYN nor RST); an ACK of something else: <SEQ=SEG.ACK>
    <CTL=RST>; still connecting; the SYN-ACK then connects."""
    d, f, _ = env.dial()
    f.send(ACK, seq=1)
    f.send(FIN | ACK, seq=1)
    out: list[Any] = [nosyn(f.quiet(0.3)), connect_result(d, 0)]
    f.send(ACK, seq=1, ack=77)
    out += [nosyn(f.ask()), connect_result(d, 0)]
    f.send(SYN | ACK, seq=0, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
    out += [f.ask(), connect_result(d)]
    close_all(d)
    return out


def nosyn(segs: list[str]) -> list[str]:
    """``segs`` without the DUT's (re)transmitted SYNs (their timing is policy)."""
    return [s for s in segs if not s.startswith("S ")]


def third_ack_with_data(env: Env) -> list[Any]:
    """The handshake's last ACK carries data (in order): the connection is accepted, the
    data acknowledged and read; with the data out of order (a gap of 10 bytes): accepted,
    a duplicate ACK with its SACK block, the gap filled then."""
    out: list[Any] = []
    for gap in (0, 10):
        lst = env.listener()
        f = Flow(env.wire, lst.getsockname()[1])
        f.syn()
        out.append(f.ask())
        f.send(ACK | PSH, seq=1 + gap, data=b"third")
        out.append(f.ask())
        d, _ = lst.accept()
        if gap:
            f.send(ACK | PSH, seq=1, data=b"0123456789")
            out.append(f.ask())
        out.append(read(d))
        close_all(d, lst)
    return out


def ecn_flags(env: Env) -> list[Any]:
    """A SYN asking for ECN (ECE+CWR): a SYN-ACK (ECE left out: policy); data with ECE and
    CWR on the connection: taken and acknowledged like any data."""
    lst = env.listener()
    f = Flow(env.wire, lst.getsockname()[1])
    f.syn(flags=SYN | ECE | CWR)
    out: list[Any] = [[a.replace("SAE ", "SA ") for a in f.ask()]]
    f.send(ACK)
    d, _ = lst.accept()
    f.ecr = False
    f.data(b"flagged", flags=ACK | PSH | ECE | CWR)
    out += [[a.replace("AE ", "A ") for a in f.ask()], read(d)]
    close_all(d, lst)
    return out


def synack_again_when_connected(env: Env) -> list[Any]:
    """The DUT connected (its ACK lost, say): the peer's SYN-ACK again draws an ACK (a
    challenge ACK, RFC 5961 4.2) and the connection lives on; the handshake's ACK again
    (to a DUT listener's connection): nothing."""
    d, f, _ = env.dial()
    f.ecr = False
    f.send(SYN | ACK, seq=0, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
    out: list[Any] = [f.ask(), connect_result(d)]
    f.tsval += 1
    f.send(SYN | ACK, seq=0, opts=syn_opts(ts=(f.tsval, f.their_ts or 0)), window=65535)
    out.append(f.ask())
    f.data(b"fine")
    d.setblocking(True)
    out += [f.ask(), read(d)]
    close_all(d)
    lst, d, g, _ = env.accepted()
    g.send(ACK)
    out.append(g.quiet(0.3))
    close_all(d, lst)
    return out


SCENARIOS: list[Scenario] = [synack_with_text, syn_sent_without_syn, third_ack_with_data,
                             ecn_flags, synack_again_when_connected]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_extra_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
