"""Adversarial review (session 7): IPv6 paths of the TCP answers, the kernel as the oracle.

The answers the other files check over IPv4, grouped per state over IPv6 (ioth's receive
fast paths and its reset builder have per-family code): a closed port and a listener given
segments without SYN, SYN-RECEIVED corner cases, RFC 5961 / RFC 9293 / PAWS in ESTABLISHED,
a TIME-WAIT reopened or not.  Each probe has a connection of its own where Linux would rate
limit a second answer (500 ms per connection).
"""

from __future__ import annotations

from collections.abc import Callable
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
from tests.review_s7.test_wire_closing import reopen, wait_state
from tests.review_s7.test_wire_handshake import free_port

pytestmark = pytest.mark.interop


def v6_closed_and_listening(env: Env) -> list[Any]:
    """A closed port: SYN, SYN with data, ACK, FIN, RST; a listener: ACK, SYN-ACK, RST,
    FIN (RFC 9293 3.10.7.1 and 3.10.7.2)."""
    port = free_port(env, v6=True)
    out: list[Any] = []
    for flags, data, ack in ((SYN, b"", 0), (SYN, b"abc", 0), (ACK, b"", 888), (FIN, b"", 0),
                             (RST, b"", 0)):
        f = Flow(env.wire, port, v6=True)
        f.send(flags, seq=7, raw_ack=ack, data=data, opts=b"")
        out.append(f.quiet(0.3) if flags & RST else f.ask(1.0))
    lst = env.listener(v6=True)
    for flags, ack in ((ACK, 1234), (SYN | ACK, 4321), (RST, 0), (FIN, 0)):
        f = Flow(env.wire, lst.getsockname()[1], v6=True)
        f.send(flags, seq=7, raw_ack=ack, opts=b"")
        out.append(f.ask(1.0) if flags & ACK else f.quiet(0.3))
    close_all(lst)
    return out


def v6_syn_received(env: Env) -> list[Any]:
    """SYN-RECEIVED: the same SYN again (the SYN-ACK again), an unacceptable ACK (a reset
    at SEG.ACK), the right ACK (accepted); a RST at the SYN-ACK's acknowledgment (the
    half-open connection gone, the ACK then reset)."""
    lst = env.listener(v6=True)
    f = Flow(env.wire, lst.getsockname()[1], v6=True)
    f.ecr = False
    f.syn()
    out: list[Any] = [f.ask()]
    f.tsval -= 1
    f.syn()
    out.append(f.ask())
    f.send(ACK, ack=1000)
    out.append(f.ask())
    f.send(ACK)
    d, _ = lst.accept()
    close_all(d)
    g = Flow(env.wire, lst.getsockname()[1], v6=True)
    g.syn()
    out.append(g.ask())
    g.send(RST, seq=1)
    out += [g.quiet(0.3), env.states(g)]
    g.send(ACK)
    out.append(g.ask(1.0))
    close_all(lst)
    return out


def v6_established(env: Env) -> list[Any]:
    """ESTABLISHED: a RST outside the window (nothing), one inside but not exact (challenge
    ACK), a SYN (challenge ACK), data beyond the window (ACK), an old duplicate (ACK with
    D-SACK), an old TSval (ACK, dropped), an ACK of unsent data (ACK); the application
    reads only the good bytes, the connection lives on.  (Echoed TSvals left out: see
    test_wire_established.)"""
    out: list[Any] = []
    probes: tuple[Callable[[Flow], None], ...] = (
        lambda f: f.send(RST, seq=f.nxt + 5_000_000),
        lambda f: f.send(RST, seq=f.nxt + 100),
        lambda f: f.send(SYN, seq=f.nxt + 50, opts=syn_opts(ts=(f.tsval + 1, 0))),
        lambda f: f.send(ACK | PSH, seq=f.nxt + 20_000_000, data=b"far"),
        lambda f: f.send(ACK | PSH, seq=1, data=b"ab"),
        lambda f: f.send(ACK | PSH, data=b"old", ts=(50, f.their_ts or 0)),
        lambda f: f.send(ACK | PSH, ack=f.rcv + 1000, data=b"bad"),
    )
    for i, probe in enumerate(probes):
        lst, d, f, _ = env.accepted(v6=True)
        f.ecr = False
        f.data(b"ab")
        out.append(f.ask())
        probe(f)
        out.append(f.quiet(0.4) if i == 0 else f.ask(1.0))
        f.data(b"!")
        out += [f.ask(), read(d)]
        close_all(d, lst)
    return out


def v6_time_wait(env: Env) -> list[Any]:
    """TIME-WAIT (the DUT closed first): a new SYN with a higher sequence number: a new
    connection; one with a lower sequence number and an older TSval: the TIME-WAIT's
    ACK."""
    out: list[Any] = []
    for seq, ts in ((100_000, 10_000), (-100_000, 50)):
        lst, d, f, _ = env.accepted(v6=True)
        d.close()
        out.append(f.ask())
        f.data(b"", flags=FIN | ACK)
        out += [f.ask(), wait_state(env, f, "TIME-WAIT")]
        out += reopen(env, f, lst, seq, ts)
        close_all(lst)
    return out


SCENARIOS: list[Scenario] = [v6_closed_and_listening, v6_syn_received, v6_established,
                             v6_time_wait]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_ipv6_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
