"""Adversarial review (session 7): ICMP errors about TCP segments, the kernel as the oracle.

The raw peer answers a DUT segment with an ICMP destination unreachable quoting it (as a
router would), with the quoted sequence number right or, as a blind attacker's guess,
outside SND.UNA..SND.NXT (RFC 5927 4.1: such errors are ignored).  Path MTU errors are in
test_wire_flow.path_mtu.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.review_s6.oracle import close_all, params
from tests.review_s7.rawpeer import ACK, Env, Envs, Flow, Scenario, read, run
from tests.review_s7.test_wire_handshake import connect_result

pytestmark = pytest.mark.interop

PORT4, HOST4 = 3, 1  # (ICMPv4 destination unreachable codes)
PORT6, ADDR6 = 4, 3  # (ICMPv6 destination unreachable codes)


def unreachable_in_syn_sent(env: Env, v6: bool = False) -> list[Any]:
    """SYN-SENT: a port unreachable quoting a sequence number other than the SYN's:
    ignored, still connecting; quoting the SYN: the connect fails (ECONNREFUSED), nothing
    more is sent."""
    d, f, _ = env.dial(v6=v6)
    assert f.syn_seg is not None
    env.wire.unreachable(f.syn_seg, PORT6 if v6 else PORT4, seq_delta=5000)
    out: list[Any] = [connect_result(d, 0.3)]
    env.wire.unreachable(f.syn_seg, PORT6 if v6 else PORT4)
    out += [connect_result(d, 1.0), f.quiet(0.3)]
    close_all(d)
    return out


def unreachable_in_syn_sent_v6(env: Env) -> list[Any]:
    """:func:`unreachable_in_syn_sent` over IPv6."""
    return unreachable_in_syn_sent(env, v6=True)


def host_unreachable_in_syn_sent(env: Env) -> list[Any]:
    """SYN-SENT: a host unreachable quoting the SYN (a soft error for RFC 1122 4.2.3.9):
    what the connect does (Linux gives up at once with EHOSTUNREACH, tcp_v4_err)."""
    out: list[Any] = []
    for v6 in (False, True):
        d, f, _ = env.dial(v6=v6)
        assert f.syn_seg is not None
        env.wire.unreachable(f.syn_seg, ADDR6 if v6 else HOST4)
        out.append(connect_result(d, 1.0))
        close_all(d)
    return out


def unreachable_in_established(env: Env) -> list[Any]:
    """ESTABLISHED with data in flight: a port unreachable and a host unreachable quoting
    it: the connection goes on (RFC 5927 / RFC 1122 4.2.3.9: Linux keeps them as soft
    errors, SO_ERROR stays 0); the data is acknowledged, more is exchanged."""
    out: list[Any] = []
    for code in (PORT4, HOST4):
        lst, d, f, _ = env.accepted()
        d.sendall(b"inflight")
        segs = f.recv(2.0, until=bool)
        out.append([f.norm(s) for s in segs])
        env.wire.unreachable(segs[0], code)
        f.quiet(0.2)
        f.send(ACK)
        out.append(d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        f.data(b"reply")
        out += [f.ask(), read(d), env.states(f)]
        close_all(d, lst)
    return out


def unreachable_in_syn_received(env: Env) -> list[Any]:
    """A listener's SYN-ACK draws a port unreachable: the half-open connection stays, the
    ACK completes it; or a host unreachable: Linux drops the half-open connection
    (tcp_v4_err -> tcp_req_err aborts on net/host unreachable, time exceeded, parameter
    problem: the SYN's source is likely forged) and the ACK that would complete it gets
    <SEQ=SEG.ACK><CTL=RST>."""
    out: list[Any] = []
    lst = env.listener()
    for code in (PORT4, HOST4):
        f = Flow(env.wire, lst.getsockname()[1])
        f.syn()
        segs = f.recv(2.0, until=bool)
        out.append([f.norm(s) for s in segs])
        env.wire.unreachable(segs[0], code)
        out += [f.quiet(0.3), env.states(f)]
        f.send(ACK)
        out.append(f.quiet(0.3) if code == PORT4 else f.ask(1.0))
    lst.settimeout(0.5)
    accepted = 0
    while True:
        try:
            d, _ = lst.accept()
        except OSError:
            break
        accepted += 1
        d.close()
    out.append(accepted)
    close_all(lst)
    return out


SCENARIOS: list[Scenario] = [unreachable_in_syn_sent, unreachable_in_syn_sent_v6,
                             host_unreachable_in_syn_sent, unreachable_in_established,
                             unreachable_in_syn_received]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_icmp_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
