"""Adversarial review (session 5): the fused receive path in the closing states (RX_PLAIN,
35ac6a3, ``TcpConnection.rx_plain``) against the layered path, on random frames.

tests/stack/test_rx_fastpath.py compares the fused and the layered receive paths on random
frames for an ESTABLISHED connection whose application never closes.  Here the application
also shuts down or closes at random points, so the peer's random frames (pure ACKs of any
number, FINs, data after a FIN, old timestamps, out-of-order, zero windows, RSTs, SYNs...)
reach the connection in FIN-WAIT-1, FIN-WAIT-2, CLOSING, CLOSE-WAIT, LAST-ACK and TIME-WAIT
too.  The fused rig (RX_PLAIN on) and the layered rig must send the same frames and keep the
same TCB, counters and tables after every step.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioth.stack import core as core_mod
from tests.support.twostacks import KINDS, PSH, Op, Rig, snapshot, step_pair


@dataclass
class Step:
    op: Op
    app: str


#: test_rx_fastpath's kinds with the closing segments (FIN, pure ACK) far more frequent
CLOSING_KINDS = ["inorder"] * 10 + ["pure_ack"] * 12 + ["fin"] * 6 + sorted(set(KINDS))
ops = st.builds(
    Op,
    kind=st.sampled_from(CLOSING_KINDS),
    size=st.sampled_from([0, 1, 100, 1448]),
    ack_delta=st.integers(-3000, 20000),
    window=st.sampled_from([0, 1, 512, 65535]),
    ts_kind=st.sampled_from(["next"] * 6 + ["same", "old", "zero_ecr"]),
    extra=st.integers(1, 5000),
    flags=st.sampled_from([0, PSH]),
    batch=st.booleans(),
    dt=st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.3, 2.0]),
    app_send=st.sampled_from([0, 0, 0, 1000, 20000]),
)
steps_st = st.builds(Step, op=ops, app=st.sampled_from(["none"] * 6 + ["shutdown", "close"]))


def _snap(r: Rig) -> tuple[object, ...]:
    c = r.conn
    return (*snapshot(r), c.state, c._fin_queued, c._rcv_eof, c._close_at,
            sorted((k, tw.snd_nxt, tw.rcv_nxt, tw.expiry)
                   for k, tw in r.core.tcp.time_wait.items()))


def _app(r: Rig, how: str) -> None:
    try:
        if how == "shutdown":
            r.conn.shutdown()
        elif how == "close":
            r.conn.close()
        else:
            return
    except OSError:
        return
    r.core.tcp.flush(r.conn, r.now)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v6=st.booleans(), trusted=st.booleans(), seed=st.integers(0, 2**32),
       steps=st.lists(steps_st, min_size=1, max_size=30))
def test_closing_states_fused_and_layered_agree(v6: bool, trusted: bool, seed: int,
                                                steps: list[Step]) -> None:
    assert core_mod.RX_PLAIN
    fast = Rig(v6, True, trusted, seed)
    slow = Rig(v6, False, trusted, seed)
    assert fast.sent() == slow.sent()
    for step in steps:
        step_pair(fast, slow, step.op, app=lambda r, how=step.app: _app(r, how), snap=_snap,
                  label=step)
    assert slow.core.rx_fast_frames == 0
