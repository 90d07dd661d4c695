"""Adversarial review (session 5): the cps exchange with each of its frames lost once.

One connection of the cps benchmark's pattern (handshake, 64-byte request, 64-byte reply, the
server closes right after replying, the client closes on the reply: the FINs cross) between two
TcpLayers on a virtual clock (tests/stack/tcp/harness.Link).  The k-th frame of the exchange
is dropped, for every k: SYN, SYN-ACK, the handshake's ACK, the request, the reply, either FIN,
either last ACK.  Whatever is lost, the exchange must complete (request and reply whole, EOF
on both ends, both ends CLOSED or in TIME-WAIT, no reset), the lost SYN must come again after
the 1 s initial RTO (RFC 6298, Linux), and the frames on the wire must be the same with every
connection fast path on and off (the knobs of tests/stack/tcp/test_conn_fastpaths.KNOBS and
test_s5_fastpaths.S5_KNOBS).
"""

from __future__ import annotations

import pytest

from ioth.stack.tcp.connection import State, TcpConnection
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import decode
from tests.stack.tcp.harness import Link
from tests.stack.tcp.test_conn_fastpaths import KNOBS
from tests.stack.tcp.test_s5_fastpaths import S5_KNOBS

REQ = bytes(range(64))
REPLY = bytes(range(64, 128))
#: frames of one exchange without loss (SYN, SYN-ACK, ACK, request, reply, FIN, FIN, ACK, ACK)
FRAMES = 9


def _knobs(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    for mod, name in [*KNOBS, *S5_KNOBS]:
        monkeypatch.setattr(mod, name, type(getattr(mod, name))(on))


Wire = list[tuple[float, bytes, bytes, bytes]]


def _exchange(drop: int | None) -> tuple[Wire, dict[str, object]]:
    """Run one exchange dropping the frame numbered ``drop`` (0-based); the capture (time,
    src, dst, segment) and what the applications saw."""
    link = Link(seed=3, policy=TcpPolicy(nodelay=True, time_wait=2.0))
    wire: list[tuple[float, bytes, bytes, bytes]] = []

    def tap(src: bytes, dst: bytes, data: bytes) -> bool:
        wire.append((link.now, src, dst, bytes(data)))
        return len(wire) - 1 != drop

    link.tap = tap
    listener = link.b.listen(80)
    client = link.a.connect(link.addr_a, link.addr_b, 80, link.now)
    st: dict[str, object] = {"req": b"", "reply": b"", "c_eof": False, "s_eof": False}
    server: list[TcpConnection] = []
    phase = {"sent": False, "replied_at": None, "s_closed": False, "c_closed": False}

    def read(conn: TcpConnection, key: str, eof_key: str) -> None:
        while True:
            try:
                got = conn.recv(4096)
            except BlockingIOError:
                return
            except OSError as exc:
                st.setdefault("errors", []).append(exc.errno)  # type: ignore[union-attr]
                return
            if not got:
                st[eof_key] = True
                return
            st[key] = st[key] + got  # type: ignore[operator]

    def pump() -> None:
        now = link.now
        if not server:
            s = listener.accept()
            if s is not None:
                server.append(s)
        if client.state is State.ESTABLISHED and not phase["sent"]:
            client.send(REQ)
            link.a.flush(client, now)
            phase["sent"] = True
        if server:
            s = server[0]
            read(s, "req", "s_eof")
            if st["req"] == REQ and phase["replied_at"] is None:
                s.send(REPLY)
                link.b.flush(s, now)
                phase["replied_at"] = now
            elif (phase["replied_at"] is not None and not phase["s_closed"]
                  and now >= phase["replied_at"] + 0.001):  # type: ignore[operator]
                s.close()  # 1 ms after the reply: its FIN crosses the client's
                link.b.flush(s, now)
                phase["s_closed"] = True
        read(client, "reply", "c_eof")
        if st["reply"] == REPLY and not phase["c_closed"]:
            client.close()
            link.a.flush(client, now)
            phase["c_closed"] = True

    def done() -> bool:
        return (bool(server) and phase["c_closed"] and phase["s_closed"]  # type: ignore[return-value]
                and client.state in (State.CLOSED, State.TIME_WAIT)
                and server[0].state in (State.CLOSED, State.TIME_WAIT))

    link.run_until(done, limit=30.0, pump=pump)
    # the 1 ms wait for the server's close needs a step to get there: the harness steps to
    # the next event, so add a timer-less nudge by running a little more (TIME-WAIT ends)
    link.run_until(lambda: not link.a.connections and not link.b.connections, limit=30.0,
                   pump=pump)
    st["c_state"] = client.state.name
    st["s_state"] = server[0].state.name
    return wire, st


def _flags(seg: bytes) -> int:
    return decode(seg)[2].flags


@pytest.mark.parametrize("drop", [None, *range(FRAMES)],
                         ids=["none", "syn", "synack", "ack", "request", "reply", "fin1", "fin2",
                              "ack1", "ack2"])
def test_each_lost_frame_is_recovered_the_same_with_and_without_fast_paths(
        monkeypatch: pytest.MonkeyPatch, drop: int | None) -> None:
    _knobs(monkeypatch, True)
    fast_wire, fast = _exchange(drop)
    _knobs(monkeypatch, False)
    general_wire, general = _exchange(drop)
    for st in (fast, general):
        assert st["req"] == REQ and st["reply"] == REPLY, st
        assert st["s_eof"] and st["c_eof"], st
        assert "errors" not in st, st
    assert all(not _flags(seg) & 0x04 for _, _, _, seg in fast_wire), "a reset was sent"
    if drop is None:
        assert len(fast_wire) == FRAMES
    if drop == 0:  # the lost SYN comes again after the initial RTO (1 s)
        assert [round(t, 3) for t, _, _, seg in fast_wire[:2]] == [0.0, 1.0]
        assert _flags(fast_wire[1][3]) & 0x02
    assert len(fast_wire) == len(general_wire)
    for i, (x, y) in enumerate(zip(fast_wire, general_wire, strict=True)):
        assert x == y, (f"frame {i} differs: {_flags(x[3]):#x} at {x[0]} / "
                        f"{_flags(y[3]):#x} at {y[0]}")
    assert fast == general


# (fixed: was a strict xfail: "a retransmitted pure FIN carries PSH (the first FIN did not;
# Linux sets PSH only on segments with data)")
@pytest.mark.parametrize("drop", [5, 6], ids=["server-fin", "client-fin"])
def test_a_retransmitted_fin_is_flagged_as_the_first(drop: int) -> None:
    wire, _ = _exchange(drop)
    lost = _flags(wire[drop][3])
    assert lost == 0x11  # FIN+ACK
    again = [f for _, src, _, seg in wire[drop + 1:]
             if src == wire[drop][1] and (f := _flags(seg)) & 0x01]
    assert again and all(f == lost for f in again), [hex(f) for f in again]
