"""``vxvde://[group][/v4/v6/port=14789/vni=1/ttl=1/if=IFNAME/hashsize=1024/expiretime=128]``.

Other options of vdeplug4: ``grp=GROUP`` (a Unix group name or number: the VNI defaults to its
id and the last 24 bits of the multicast address are set to it), ``rcvbuf=SIZE`` (K/M/G
suffixes), ``bind=ADDR`` (local address of the sending socket).

A distributed switch over UDP multicast, wire compatible with vdeplug4's ``vxvde`` module:

* every datagram is an 8-byte header (``08 00 00 00 | VNI (24 bit BE) | 00``) and a raw frame;
  a datagram whose header differs from ours (other VNI, other flags) is dropped;
* each plug owns a *multicast* socket bound to ``group:port`` and a *unicast* socket on an
  ephemeral port that sends everything;
* frames to broadcast/multicast MACs or to unknown MACs go to the group; frames to a learned MAC
  go unicast to the address of the socket that sent that MAC's last frame;
* source MAC -> sender address is learned from every accepted frame and expires after
  ``expiretime`` seconds; the table is bounded (``hashsize`` entries, least recently used out);
* our own multicast echoes (sender port = our unicast port, sender address local) are dropped;
* on close the plug sends the bare 8-byte header to the group: receivers forget that sender.

Default groups are 239.0.0.1 and ff05:56de::1 (``/v6``); default TTL 1.  ``mtu=N`` (not in
vdeplug4) raises the frame size limit for jumbo frames between ioth peers.
"""

from __future__ import annotations

import collections
import select
import socket
import struct
import time
from collections.abc import Hashable
from typing import Any, ClassVar

from ioth.errors import VNLError
from ioth.net.plug import MIN_FRAME, Plug
from ioth.net.plugs.udp import RECV_SIZE, SockAddr, plug_mtu, strip_brackets, wildcard
from ioth.net.vnl import VNL, Style

VX_FLAGS = 0x08
VX_HLEN = 8
DEFAULT_GROUP_V4 = "239.0.0.1"
DEFAULT_GROUP_V6 = "ff05:56de::1"
VXVDE_PORT = 14789


def vx_header(vni: int) -> bytes:
    """The 8-byte vxvde/VXLAN header for ``vni``."""
    return struct.pack("!II", VX_FLAGS << 24, (vni & 0xFFFFFF) << 8)


class MacTable:
    """Sans-IO learning table: MAC -> peer address, with expiry and a size bound.

    ``now`` is passed by the caller (seconds, any monotonic clock).  The table holds at most
    ``size`` entries; learning a new MAC in a full table evicts the least recently learned one
    (counted in ``evictions``).
    """

    def __init__(self, size: int = 1024, expire: float = 128.0) -> None:
        self.size = max(1, size)
        self.expire = expire
        self._table: collections.OrderedDict[bytes, tuple[Hashable, float]] = (
            collections.OrderedDict())
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._table)

    def learn(self, mac: bytes, addr: Hashable, now: float) -> None:
        """Record that ``mac`` was last seen behind ``addr`` at ``now``."""
        table = self._table
        if mac in table:
            table.move_to_end(mac)
        elif len(table) >= self.size:
            table.popitem(last=False)
            self.evictions += 1
        table[mac] = (addr, now)

    def lookup(self, mac: bytes, now: float) -> Any:
        """The address of ``mac`` if learned less than ``expire`` seconds ago, else None."""
        entry = self._table.get(mac)
        if entry is None:
            return None
        if now - entry[1] > self.expire:
            del self._table[mac]
            return None
        return entry[0]

    def forget_addr(self, addr: Hashable) -> int:
        """Drop every MAC learned behind ``addr``; returns how many."""
        stale = [mac for mac, (a, _) in self._table.items() if a == addr]
        for mac in stale:
            del self._table[mac]
        return len(stale)


def size_option(vnl: VNL, key: str) -> int:
    """Option ``key`` as a byte count with an optional K, M or G (x1024) suffix; 0 if absent."""
    text = (vnl.get(key) or "").strip()
    if not text:
        return 0
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    try:
        return int(digits, 0) * scale
    except ValueError:
        raise VNLError(f"VNL {vnl.text!r}: {key}={text!r} is not a size") from None


def group_id(vnl: VNL) -> int | None:
    """Option ``grp``: a group name or number (as in vdeplug4), or None."""
    text = vnl.get("grp")
    if not text:
        return None
    if text.isdigit():
        return int(text)
    import grp as grpmod

    try:
        return int(grpmod.getgrnam(text).gr_gid)
    except KeyError:
        raise VNLError(f"VNL {vnl.text!r}: no group named {text!r}") from None


def resolve_group(vnl: VNL, port: int, gid: int | None = None) -> tuple[int, SockAddr]:
    """The multicast group of a vxvde/vxlan VNL as (family, sockaddr).

    With ``gid`` (vxvde's ``grp`` option) the last 24 bits of the group address are the group id,
    so that each Unix group gets its own multicast group.
    """
    want_v4, want_v6 = vnl.flag("v4"), vnl.flag("v6")
    family = socket.AF_UNSPEC
    if want_v4 and not want_v6:
        family = socket.AF_INET
    elif want_v6 and not want_v4:
        family = socket.AF_INET6
    host = strip_brackets(vnl.address) or (DEFAULT_GROUP_V6 if want_v6 and not want_v4
                                           else DEFAULT_GROUP_V4)
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise VNLError(f"VNL {vnl.text!r}: cannot resolve group {host!r}: {exc}") from None
    fam, _, _, _, addr = infos[0]
    packed = socket.inet_pton(fam, str(addr[0]))
    if gid is not None:
        packed = packed[:-3] + (gid & 0xFFFFFF).to_bytes(3, "big")
        addr = (socket.inet_ntop(fam, packed), *addr[1:])
    multicast = (packed[0] & 0xF0) == 0xE0 if fam == socket.AF_INET else packed[0] == 0xFF
    if not multicast:
        raise VNLError(f"VNL {vnl.text!r}: {host!r} is not a multicast group")
    return int(fam), addr


def ifindex_of(vnl: VNL) -> int:
    """Interface index of option ``if`` (0 when absent)."""
    name = vnl.get("if")
    if not name:
        return 0
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise VNLError(f"VNL {vnl.text!r}: no interface named {name!r}") from None


def join_group(sock: socket.socket, family: int, group: str, ifindex: int) -> None:
    """Join ``group`` on ``sock`` (on interface ``ifindex``, or the routing default)."""
    if family == socket.AF_INET:
        mreqn = socket.inet_aton(group) + socket.inet_aton("0.0.0.0") + struct.pack("i", ifindex)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    else:
        mreq6 = socket.inet_pton(socket.AF_INET6, group) + struct.pack("I", ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)


def set_multicast_out(sock: socket.socket, family: int, ttl: int, ifindex: int,
                      loop: bool) -> None:
    """TTL/hops, outgoing interface and loopback of multicast sent on ``sock``."""
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loop))
        if ifindex:
            mreqn = socket.inet_aton("0.0.0.0") * 2 + struct.pack("i", ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(loop))
        if ifindex:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO_SPACE = socket.CMSG_SPACE(12)


def local_ipv6_addresses() -> frozenset[str]:
    """IPv6 addresses of the calling thread's network namespace (from procfs)."""
    found: set[str] = set()
    try:
        with open("/proc/thread-self/net/if_inet6", encoding="ascii") as f:
            for line in f:
                hexaddr = line.split()[0]
                found.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr)))
    except OSError:
        pass
    return frozenset(found)


def vx_options(vnl: VNL, kwargs: dict[str, Any], default_mtu: int) -> dict[str, Any]:
    """The keyword arguments vxvde and vxlan take alike from their VNL: ``ttl``, ``if``,
    ``hashsize``, ``expiretime`` (128 unless > 0), ``rcvbuf``, ``mtu`` (``kwargs`` first) and
    the VNL text."""
    mtu = plug_mtu(vnl, kwargs, default_mtu)
    expire = vnl.int_option("expiretime", 128)
    return {"ttl": vnl.int_option("ttl", 1), "ifindex": ifindex_of(vnl),
            "hashsize": vnl.int_option("hashsize", 1024),
            "expiretime": expire if expire > 0 else 128,
            "rcvbuf": size_option(vnl, "rcvbuf"), "vnl": vnl.text, "mtu": mtu}


class VxPlug(Plug):
    """What a vxvde port and a VXLAN endpoint share: the group, the VNI header, the MAC
    learning table and ``send`` (to the learned peer of the destination MAC, else to the group)
    on the socket ``_tx`` that the subclass opens."""

    #: frames sent to the group / unicast to a learned peer
    multicast_tx: int
    unicast_tx: int
    _tx: socket.socket

    def __init__(self, group: SockAddr, family: int, vni: int, hashsize: int,
                 expiretime: float, vnl: str, mtu: int | None) -> None:
        super().__init__(vnl, mtu)
        self.family = family
        self.group = group
        self.vni = vni
        self.header = vx_header(vni)
        self.table = MacTable(hashsize, expiretime)
        self.multicast_tx = 0
        self.unicast_tx = 0

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Send one frame to the group or to the learned owner of its destination MAC."""
        n = len(frame)
        counters = self.counters
        if n < MIN_FRAME or n > self.max_frame or self.closed:
            counters.tx_dropped += 1
            return False
        addr = None
        if not frame[0] & 1:
            addr = self.table.lookup(bytes(frame[0:6]), time.monotonic())
        if addr is None:
            addr = self.group
            self.multicast_tx += 1
        else:
            self.unicast_tx += 1
        try:
            self._tx.sendmsg((self.header, frame), (), 0, addr)
        except OSError:
            counters.tx_dropped += 1
            return False
        counters.tx_frames += 1
        counters.tx_bytes += n
        return True


class VxvdePlug(VxPlug):
    """One port of a vxvde distributed switch."""

    STYLE: ClassVar[Style] = "slash"
    KEYS: ClassVar[tuple[str, ...]] = ("v4", "v6", "port", "vni", "ttl", "if", "hashsize",
                                       "expiretime", "rcvbuf", "bind", "grp", "mtu")
    #: multicast echoes of our own frames dropped
    echo_dropped: int

    def __init__(self, group: SockAddr, family: int, vni: int = 1, ttl: int = 1,
                 ifindex: int = 0, hashsize: int = 1024, expiretime: float = 128.0,
                 rcvbuf: int = 0, bind: str | None = None, vnl: str = "",
                 mtu: int | None = None) -> None:
        super().__init__(group, family, vni, hashsize, expiretime, vnl, mtu)
        self.echo_dropped = 0
        self.closes_received = 0
        #: frames received on the unicast socket (their sender had learned our MAC)
        self.unicast_rx = 0
        self.multicast_rx = 0
        self._local6 = local_ipv6_addresses() if family == socket.AF_INET6 else frozenset()
        self.multi = socket.socket(family, socket.SOCK_DGRAM)
        self.uni = self._tx = socket.socket(family, socket.SOCK_DGRAM)
        self._poll: select.epoll | None = None
        try:
            self.multi.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.multi.bind(group)
            if family == socket.AF_INET:
                self.multi.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            join_group(self.multi, family, group[0], ifindex)
            if rcvbuf:
                for s in (self.multi, self.uni):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            set_multicast_out(self.uni, family, ttl, ifindex, loop=True)
            self.uni.bind((bind or wildcard(family), 0))
            self.uniport: int = self.uni.getsockname()[1]
            self.multi.setblocking(False)
            self.uni.setblocking(False)
            self._poll = select.epoll()
            self._poll.register(self.multi.fileno(), select.EPOLLIN)
            self._poll.register(self.uni.fileno(), select.EPOLLIN)
        except OSError:
            self._close_sockets()
            raise

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> VxvdePlug:
        """Open from ``vxvde://group/options``."""
        port = vnl.int_option("port", VXVDE_PORT)
        gid = group_id(vnl)
        family, group = resolve_group(vnl, port, gid)
        options = vx_options(vnl, kwargs, cls.DEFAULT_MTU)
        vni = vnl.int_option("vni", gid if gid is not None else 1)
        return cls(group, family, vni=vni & 0xFFFFFF, bind=vnl.get("bind") or None, **options)

    def fileno(self) -> int:
        assert self._poll is not None
        return self._poll.fileno()

    def _is_echo(self, sender: SockAddr, ancdata: list[tuple[int, int, bytes]]) -> bool:
        """Our own multicast frame looped back: our unicast port and a local address."""
        if sender[1] != self.uniport:
            return False
        if self.family == socket.AF_INET6:
            return str(sender[0]).split("%")[0] in self._local6
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 8:
                # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                return bool(socket.inet_ntoa(data[4:8]) == sender[0])
        return False

    def _drain(self, sock: socket.socket, is_multi: bool, out: list[bytes], limit: int,
               now: float) -> None:
        header = self.header
        counters = self.counters
        recvmsg = sock.recvmsg
        cmsg_space = _PKTINFO_SPACE if is_multi else 0
        learn = self.table.learn
        while len(out) < limit:
            try:
                data, ancdata, _, sender = recvmsg(RECV_SIZE, cmsg_space)
            except BlockingIOError:
                return
            except OSError:
                counters.rx_errors += 1
                return
            n = len(data) - VX_HLEN
            if n < MIN_FRAME:
                if n == 0 and data == header:
                    self.table.forget_addr(sender)
                    self.closes_received += 1
                else:
                    counters.rx_errors += 1
                continue
            if data[:VX_HLEN] != header:
                counters.rx_dropped += 1
                continue
            if is_multi and self._is_echo(sender, ancdata):
                self.echo_dropped += 1
                continue
            frame = data[VX_HLEN:]
            learn(frame[6:12], sender, now)
            if is_multi:
                self.multicast_rx += 1
            else:
                self.unicast_rx += 1
            counters.rx_frames += 1
            counters.rx_bytes += n
            out.append(frame)

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Drain both sockets (up to ``limit`` frames)."""
        out: list[bytes] = []
        if self.closed:
            return out
        now = time.monotonic()
        self._drain(self.uni, False, out, limit, now)
        self._drain(self.multi, True, out, limit, now)
        return out

    def _close_sockets(self) -> None:
        if self._poll is not None:
            self._poll.close()
        self.multi.close()
        self.uni.close()

    def close(self) -> None:
        """Tell the group we are gone (bare header), then close the sockets."""
        if not self.closed:
            try:
                self.uni.sendto(self.header, self.group)
            except OSError:
                pass
            self._close_sockets()
        super().close()

    def describe(self) -> str:
        return f"vxvde group {self.group[0]}:{self.group[1]} vni {self.vni} port {self.uniport}"
