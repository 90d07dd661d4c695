"""``TcpInfo``: the ``ss -ti``-like snapshot of one connection."""

from __future__ import annotations

from dataclasses import dataclass

from ioth.stack.tcp.state import State


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

