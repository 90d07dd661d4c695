"""``TcpInfo``: the ``ss -ti``-like snapshot of one connection; :func:`pack_tcp_info`: the
same as Linux's ``struct tcp_info`` (``getsockopt(TCP_INFO)``)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioth.stack.tcp.state import State

if TYPE_CHECKING:
    from ioth.stack.tcp.connection import TcpConnection


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """A snapshot for ``ss``-like listings (times in seconds, sizes in bytes)."""

    state: State
    local: tuple[bytes, int]
    remote: tuple[bytes, int]
    cc: str
    cwnd: int
    ssthresh: int
    srtt: float | None
    rttvar: float | None
    rto: float
    mss: int
    snd_wscale: int
    rcv_wscale: int
    sack: bool
    timestamps: bool
    bytes_in_flight: int
    send_queue: int
    recv_queue: int
    retransmissions: int
    rto_expirations: int
    fast_recoveries: int
    segments_in: int
    segments_out: int
    dropped: int
    error: int | None
    tail_probes: int = 0
    """Tail loss probes sent (RFC 8985 7)."""
    dsacks: int = 0
    """D-SACK blocks received: the peer got some data twice (RFC 2883, RFC 3708)."""
    spurious_probes: int = 0
    """Tail loss probes a D-SACK showed to be duplicates (the ACKs were late, not lost)."""
    spurious_retrans: int = 0
    """Retransmissions shown unnecessary by D-SACKs or Eifel timestamps (RFC 3708, 3522)."""
    undos: int = 0
    """Congestion window reductions undone because all their retransmissions were spurious."""
    dsacks_sent: int = 0
    """D-SACK blocks sent: duplicate segments received (RFC 2883)."""

    def __str__(self) -> str:
        """One line in the spirit of ``ss -tni``."""
        la, lp = self.local
        ra, rp = self.remote
        opts = [o for o, on in (("ts", self.timestamps), ("sack", self.sack)) if on]
        rtt = (f" rtt:{self.srtt * 1000:.3f}/{(self.rttvar or 0) * 1000:.3f}"
               if self.srtt is not None else "")
        ssthresh = "" if self.ssthresh >= 1 << 60 else f" ssthresh:{self.ssthresh // self.mss}"
        return (
            f"{self.state} {self.recv_queue} {self.send_queue} {_addr(la)}:{lp} {_addr(ra)}:{rp}"
            f" {' '.join(opts)} {self.cc} wscale:{self.snd_wscale},{self.rcv_wscale}"
            f" rto:{self.rto * 1000:.0f}{rtt} mss:{self.mss} cwnd:{self.cwnd // self.mss}"
            f"{ssthresh} unacked:{self.bytes_in_flight} retrans:{self.retransmissions}"
            f" rto_expired:{self.rto_expirations} recoveries:{self.fast_recoveries}"
            f"{_nz('tlp', self.tail_probes)}{_nz('dsack', self.dsacks)}"
            f"{_nz('spurious', self.spurious_retrans)}{_nz('undo', self.undos)}"
            f"{_nz('dsack_sent', self.dsacks_sent)}"
            f" segs_in:{self.segments_in} segs_out:{self.segments_out}"
        )


def _nz(name: str, value: int) -> str:
    return f" {name}:{value}" if value else ""


def _addr(raw: bytes) -> str:
    import ipaddress

    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return f"[{ipaddress.IPv6Address(raw)}]"
    return "*"



#: Linux's numbers of the TCP states (include/net/tcp_states.h), for ``struct tcp_info``.
LINUX_STATE = {State.ESTABLISHED: 1, State.SYN_SENT: 2, State.SYN_RECEIVED: 3,
               State.FIN_WAIT_1: 4, State.FIN_WAIT_2: 5, State.TIME_WAIT: 6, State.CLOSED: 7,
               State.CLOSE_WAIT: 8, State.LAST_ACK: 9, State.LISTEN: 10, State.CLOSING: 11}
TCPI_OPT_TIMESTAMPS = 1
TCPI_OPT_SACK = 2
TCPI_OPT_WSCALE = 4
#: ``struct tcp_info`` of Linux 6.x (include/uapi/linux/tcp.h) up to ``tcpi_total_rto_time``
#: (248 bytes); :data:`TCP_INFO_SIZE` pads it with the zero accurate-ECN counters of 6.18.
_TCP_INFO = struct.Struct("=8B24I4Q6IQ3Q2I2Q3I2I I2HI")
TCP_INFO_SIZE = 280
_INFINITE_SSTHRESH = 0x7FFFFFFF


def _us(seconds: float | None) -> int:
    return 0 if seconds is None else min(int(seconds * 1e6), 0xFFFFFFFF)


def pack_tcp_info(conn: TcpConnection | None, state: int = 7, backlog: tuple[int, int] = (0, 0),
                  mss: int = 536) -> bytes:
    """``struct tcp_info`` (Linux's layout, :data:`TCP_INFO_SIZE` bytes) of ``conn``, as
    ``getsockopt(TCP_INFO)`` returns it, with what ioth knows: state, ca_state (Open,
    Recovery or Loss), retransmits, probes, backoff, options, window scales, rto, snd/rcv
    MSS, unacked/lost/retrans (segments), pmtu, rtt/rttvar (us), ssthresh and cwnd
    (segments), advmss, reordering, total_retrans, bytes acked and received, segments
    in/out, notsent bytes, min_rtt, dsack_dups, snd_wnd/rcv_wnd; other fields are 0.
    Without a connection: a socket in ``state`` (7, TCP_CLOSE; 10, TCP_LISTEN with
    ``backlog`` = (queued, backlog) in unacked/sacked as Linux) with the defaults of a new
    one (rto 1 s, snd_mss ``mss``, cwnd 10)."""
    if conn is None:
        return _TCP_INFO.pack(
            state, 0, 0, 0, 0, 0, 0, 0,
            1_000_000, 0, mss, 0, backlog[0], backlog[1], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            _INFINITE_SSTHRESH, 10, 0, 3, 0, 0, 0,
            *(0,) * 27,
        ).ljust(TCP_INFO_SIZE, b"\0")
    smss = max(1, conn.mss)
    opts = (TCPI_OPT_TIMESTAMPS if conn.ts_ok else 0) | (TCPI_OPT_SACK if conn.sack_ok else 0)
    if conn.snd_wscale or conn.rcv_wscale:
        opts |= TCPI_OPT_WSCALE
    in_flight = conn.snd_nxt - conn.snd_una
    ca = 4 if conn._retries and conn.rto_expirations else 3 if conn._in_recovery else 0
    ssthresh = conn.cc.ssthresh
    ssthresh = _INFINITE_SSTHRESH if ssthresh >= 1 << 31 else ssthresh // smss
    lost = max(0, conn._lost_edge - conn.snd_una) if conn._lost_edge < conn.snd_nxt else 0
    retrans = max(0, conn._high_rxt - conn.snd_una)
    rcv_wnd = max(0, conn._rcv_adv - conn.rcv_nxt)
    min_rtt = conn._min_rtt
    # data bytes acknowledged / received: the sequence space (unwrapped) less SYN and FIN
    acked = conn.snd_una - conn.iss - 1
    if conn._fin_queued and conn.snd_una > conn._fin_seq:
        acked -= 1
    received = conn.rcv_nxt - conn.irs - 1 - (1 if conn._rcv_eof else 0)
    return _TCP_INFO.pack(
        LINUX_STATE.get(conn.state, 7), ca, min(conn._retries, 255), min(conn._probes, 255),
        min(conn._retries, 255), opts, (conn.snd_wscale & 15) | (conn.rcv_wscale & 15) << 4, 0,
        _us(conn.rto), 0, smss, conn.rcv_mss,
        -(-in_flight // smss), 0, -(-lost // smss), -(-retrans // smss), 0,
        0, 0, 0, 0,
        conn.mss_local + 40, 0, _us(conn.srtt), _us(conn.rttvar), ssthresh,
        conn.cc.cwnd // smss, conn.mss_local, conn._reordering,
        0, 0, conn.retransmissions,
        0, 0, max(0, acked), max(0, received),
        conn.segments_out & 0xFFFFFFFF, conn.segments_in & 0xFFFFFFFF,
        conn.send_queue - in_flight if conn.send_queue > in_flight else 0, _us(min_rtt), 0, 0,
        0, 0, 0, 0,
        0, 0,
        0, 0,
        conn.dsacks, 0, 0,
        min(conn.snd_wnd, 0xFFFFFFFF), min(rcv_wnd, 0xFFFFFFFF), 0, conn.rto_expirations & 0xFFFF,
        0, 0,
    ).ljust(TCP_INFO_SIZE, b"\0")
