"""Adversarial review (session 7): the DUT's loss recovery on the wire, kernel as oracle.

The DUT sends a flight; the peer "loses" its first segment and reports the others with
SACK blocks (RFC 2018) in duplicate ACKs: the DUT must send the hole again first and never
the segments the peer holds (RFC 6675's scoreboard), whatever its timers (policy: Linux's
RACK reordering window, its RTO) decide about when.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.review_s6.oracle import close_all, params
from tests.review_s7.rawpeer import ACK, Env, Envs, Flow, Scenario, run
from tests.review_s7.test_wire_flow import at

pytestmark = pytest.mark.interop


def sack_recovery(env: Env, v6: bool = False) -> list[Any]:
    """Five full segments; the first lost, the others SACKed in four duplicate ACKs: the
    first segment resent is the hole; once the hole is acknowledged (with everything),
    nothing else is resent; the SACKed segments are never resent (a tail loss probe of the
    last segment, sent before the SACKs came, is allowed and left out)."""
    lst = env.listener(v6)
    f = Flow(env.wire, lst.getsockname()[1], v6)
    f.connect()
    d, _ = lst.accept()
    total = 5 * 1448 if not v6 else 5 * 1428
    t = threading.Thread(target=d.sendall, args=(at(1, total),), daemon=True)
    t.start()
    flight = f.recv(2.0, until=lambda segs: sum(len(s.payload) for s in segs) >= total,
                    settle=0.02)
    firsts = sorted({(f._rel(s.seq, f.irs), len(s.payload)) for s in flight if s.payload})
    out: list[Any] = [len(firsts)]
    hole_end = 1 + firsts[0][1]
    f.rcv = 1
    for a, n in firsts[1:]:
        f.send(ACK, opts=b"\x01\x01\x05\x0a" + (f.iss + hole_end).to_bytes(4, "big")
               + (f.iss + a + n).to_bytes(4, "big"))
    last = firsts[-1][0]

    def resends(segs: list[Any]) -> list[Any]:
        # (a tail loss probe may resend the last segment before the SACKs are in: allowed)
        return [s for s in segs if s.payload and f._rel(s.seq, f.irs) != last]
    resent = resends(f.recv(2.0, until=lambda segs: bool(resends(segs)), settle=0.02))
    out.append(f._rel(resent[0].seq, f.irs) if resent else None)
    f.rcv = 1 + total
    f.send(ACK)
    later = resends(f.recv(0.5))
    sacked = [s for s in resent[1:] + later if f._rel(s.seq, f.irs) >= hole_end]
    out += [len(sacked), t.join(2)]
    close_all(d, lst)
    return out


def sack_recovery_v6(env: Env) -> list[Any]:
    """:func:`sack_recovery` over IPv6."""
    return sack_recovery(env, v6=True)


SCENARIOS: list[Scenario] = [sack_recovery, sack_recovery_v6]
BUGS: dict[Scenario, str] = {}


@pytest.mark.parametrize(("scenario", "kind"), params(SCENARIOS, BUGS))  # type: ignore[arg-type]
def test_recovery_as_the_kernel(scenario: Scenario, kind: str, envs: Envs) -> None:
    run(scenario, kind, envs)


