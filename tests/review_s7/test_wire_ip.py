"""Adversarial review (session 7): TCP segments in unusual IP packets, the kernel as oracle.

IPv4 header options, an IPv6 Destination Options header before TCP, segments cut into IP
fragments (IPv4 and IPv6): the DUT must take them as if plain (RFC 791, RFC 8200, RFC 1122
3.2.1.4 / 3.3.2).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.review_s6.oracle import close_all, params
from tests.review_s7.rawpeer import (
    ACK,
    PSH,
    SYN,
    Env,
    Envs,
    Flow,
    IpShape,
    Scenario,
    read,
    run,
    syn_opts,
)

pytestmark = pytest.mark.interop

NOPS = b"\x01\x01\x01\x00"  # (IPv4 options: three NOPs and the end of the list)


def shaped(env: Env, shape: IpShape, v6: bool) -> list[Any]:
    """A handshake whose SYN, and a 1000-byte segment, come wrapped as ``shape`` says: the
    SYN-ACK, the ACK of the data, what the application reads."""
    lst = env.listener(v6)
    f = Flow(env.wire, lst.getsockname()[1], v6)
    f.tsval += 1
    f.send(SYN, seq=0, opts=syn_opts(ts=(f.tsval, 0)), window=65535, ip=shape)
    out: list[Any] = [f.ask()]
    f.send(ACK)
    d, _ = lst.accept()
    data = bytes(range(250)) * 4
    f.send(ACK | PSH, data=data, ip=shape)
    f.nxt += len(data)
    got = read(d, 2, 4096)
    if isinstance(got, bytes) and len(got) < len(data):
        more = read(d, 1, 4096)
        got += more if isinstance(more, bytes) else b""
    out += [f.ask(), got == data]
    close_all(d, lst)
    return out


def ipv4_options(env: Env) -> list[Any]:
    """IPv4 packets with header options (NOPs): taken as plain ones."""
    return shaped(env, IpShape(options=NOPS), False)


def ipv4_fragments(env: Env) -> list[Any]:
    """IPv4: the SYN and the data each cut into two fragments (the first with 24 bytes of
    the TCP segment): reassembled, taken."""
    return shaped(env, IpShape(cut=24), False)


def ipv6_destination_options(env: Env) -> list[Any]:
    """IPv6 with a Destination Options header (an unknown option whose type says skip it)
    before TCP: taken as plain."""
    return shaped(env, IpShape(dest_opts=True), True)


def ipv6_fragments(env: Env) -> list[Any]:
    """IPv6: the SYN and the data in two fragments each (Fragment header; then with a
    Destination Options header in the fragmentable part too): reassembled, taken."""
    return shaped(env, IpShape(cut=24), True) + shaped(env, IpShape(cut=32, dest_opts=True),
                                                       True)


def ipv6_fragment_header_chain(env: Env) -> list[Any]:
    """IPv6: a first fragment that does not hold the whole header chain (a Destination
    Options header and only 16 bytes of the TCP header): RFC 7112 5 says drop it (Linux
    does, ipv6_frag_thdr_truncated, with an ICMPv6 parameter problem): the SYN gets no
    answer."""
    lst = env.listener(True)
    f = Flow(env.wire, lst.getsockname()[1], True)
    f.tsval += 1
    f.send(SYN, seq=0, opts=syn_opts(ts=(f.tsval, 0)), window=65535,
           ip=IpShape(cut=24, dest_opts=True))
    out: list[Any] = [f.quiet(0.5)]
    close_all(lst)
    return out


SCENARIOS: list[Scenario] = [ipv4_options, ipv4_fragments, ipv6_destination_options,
                             ipv6_fragments, ipv6_fragment_header_chain]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_ip_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)
