"""``ioth.Stack``: one network node (interfaces, addresses, routes, neighbours, sockets).

The protocol state lives in a sans-IO :class:`~ioth.stack.core.StackCore`; this class adds the
public API (iothpy-compatible configuration calls, iothconf strings, introspection, sockets), one
lock (core locking: every call runs protocol code directly under it) and the runtime that moves
frames between interfaces and plugs.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import random
import socket as _socket
import threading
from typing import TYPE_CHECKING, Any

from ioth.errors import ConfigError
from ioth.net.registry import open_plug
from ioth.runtime.engine import Engine
from ioth.stack.config import parse_config
from ioth.stack.core import StackCore
from ioth.stack.hashaddr import hash_mac, mac_to_str, parse_mac
from ioth.stack.interface import Interface
from ioth.stack.route import Route
from ioth.stack.runtime import StackRuntime
from ioth.stack.tcp.policy import TcpPolicy

if TYPE_CHECKING:
    from ioth.sockets.base import IothSocket

log = logging.getLogger(__name__)

_UNSUPPORTED = {"dhcp": "DHCPv4", "dhcp6": "DHCPv6", "rd": "router discovery (rd)",
                "slaac": "SLAAC"}


def split_ifname(vnl: str) -> tuple[str | None, str]:
    """Split an optional ``NAME:`` prefix off a VNL.

    The prefix is the text before the first ':' when it contains no '/' and the ':' is not the
    start of '://' (so ``vde:///tmp/sw`` has no name and ``eth1:vde:///tmp/sw`` is named eth1).
    """
    idx = vnl.find(":")
    if idx <= 0:
        return None, vnl
    name = vnl[:idx]
    if "/" in name or vnl[idx + 1 : idx + 3] == "//":
        return None, vnl
    return name, vnl[idx + 1 :]


def _packed(family: int, addr: str | bytes) -> bytes:
    if isinstance(addr, bytes):
        want = 4 if family == _socket.AF_INET else 16
        if len(addr) != want:
            raise ValueError(f"address must be {want} bytes")
        return addr
    ip = ipaddress.ip_address(addr)
    if (ip.version == 4) != (family == _socket.AF_INET):
        raise ValueError(f"{addr!r} does not match the address family")
    return ip.packed


class Stack:
    """A user-mode IPv4/IPv6 stack: ``Stack(vnl=None, config="")``.

    ``vnl`` is a VNL or a list of VNLs; interfaces are named vde0, vde1, ... (``NAME:VNL`` names
    one).  ``config`` is an iothconf string.  ``engine`` shares an engine thread (default: the
    process-wide one); ``own_thread=True`` gives the stack its own.  ``rng`` makes MACs, ports and
    identifiers reproducible.
    """

    def __init__(self, vnl: str | list[str] | tuple[str, ...] | None = None, config: str = "",
                 *, engine: Engine | None = None, own_thread: bool = False,
                 rng: random.Random | None = None) -> None:
        self.lock = threading.RLock()
        self.closed = False
        self._pid = os.getpid()  # (close in a forked child: see close)
        self.core = StackCore(rng if rng is not None else random.Random())
        self.runtime = StackRuntime(self, engine, own_thread)
        self._sockets: set[Any] = set()  # ioth.sockets objects; close() closes them
        self.dns: list[str] = []
        self.domain: str | None = None
        self.fqdn: str | None = None
        self.impl = "ioth"
        try:
            vnls = [vnl] if isinstance(vnl, str) else list(vnl or [])
            for v in vnls:
                self.iplink_add_vde(-1, v)
            if config:
                self.config(config)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------
    def now(self) -> float:
        """The stack's clock (the engine's monotonic clock)."""
        return self.runtime.clock()

    def close(self) -> None:
        """Close every socket and plug of this stack.

        In a forked child (a ``with`` block or an atexit handler unwinding there) the stack is
        only marked closed: its plugs, switch, epoll sets, wake pipes and connections are
        shared with the parent, whose threads run them (closing them would unlink the parent's
        switch, drop its epoll registrations, wake and stop its threads, and send FINs and
        RSTs for its connections); the child's copies of the descriptors go at its exit or
        exec (they are close-on-exec)."""
        if os.getpid() != self._pid:
            self.closed = True
            return
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for s in list(self._sockets):
                s.close()
        self.runtime.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        names = ",".join(i.name for i in self.core.ifaces.values())
        return f"<ioth.Stack {names}{' closed' if self.closed else ''}>"

    def _iface(self, ifindex: int) -> Interface:
        iface = self.core.ifaces.get(ifindex)
        if iface is None:
            raise OSError(errno.ENODEV, f"No such device: ifindex {ifindex}")
        return iface

    # -- iothpy-compatible configuration --------------------------------------------------
    def if_nametoindex(self, name: str) -> int:
        """Interface index of ``name``; OSError(ENODEV) if there is none."""
        iface = self.core.iface_by_name(name)
        if iface is None:
            raise OSError(errno.ENODEV, f"No such device: {name}")
        return iface.index

    def if_indextoname(self, ifindex: int) -> str:
        """Name of interface ``ifindex``."""
        return self._iface(ifindex).name

    def linksetupdown(self, ifindex: int, updown: bool | int) -> None:
        """Bring a link up (1/True) or down."""
        with self.lock:
            self._iface(ifindex)
            self.core.set_up(ifindex, bool(updown), self.now())
            self.runtime.flush()

    def linksetaddr(self, ifindex: int, mac: str | bytes) -> None:
        """Set the MAC address of an interface."""
        try:
            value = parse_mac(mac)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        with self.lock:
            self._iface(ifindex).mac = value

    def linkgetaddr(self, ifindex: int) -> str:
        """MAC address of an interface as ``aa:bb:cc:dd:ee:ff``."""
        return mac_to_str(self._iface(ifindex).mac)

    def linksetmtu(self, ifindex: int, mtu: int) -> None:
        """Set the MTU (68..65535, at most what the interface's plug carries)."""
        with self.lock:
            iface = self._iface(ifindex)
            plug = self.runtime.plugs.get(ifindex)
            limit = plug.mtu if plug is not None else 65535
            if not 68 <= mtu <= min(limit, 65535):
                raise OSError(errno.EINVAL, f"MTU {mtu} out of range 68..{limit}")
            iface.mtu = mtu

    def ipaddr_add(self, family: int, addr: str | bytes, prefixlen: int, ifindex: int) -> None:
        """Add an address (IPv6 addresses go through DAD first)."""
        packed = _packed(family, addr)
        with self.lock:
            self._iface(ifindex)
            if family == _socket.AF_INET:
                if not 0 <= prefixlen <= 32:
                    raise OSError(errno.EINVAL, "bad prefix length")
                self.core.add_addr4(ifindex, packed, prefixlen, self.now())
            else:
                if not 0 <= prefixlen <= 128:
                    raise OSError(errno.EINVAL, "bad prefix length")
                self.core.ip6.add_addr(ifindex, packed, prefixlen, self.now())
            self.runtime.flush()

    def ipaddr_del(self, family: int, addr: str | bytes, prefixlen: int, ifindex: int) -> None:
        """Remove an address."""
        packed = _packed(family, addr)
        with self.lock:
            self._iface(ifindex)
            if family == _socket.AF_INET:
                self.core.del_addr4(ifindex, packed, prefixlen)
            else:
                self.core.ip6.del_addr(ifindex, packed, prefixlen)
            self.runtime.flush()

    def iproute_add(self, family: int, gw: str | bytes | None, dst: str | bytes | None = None,
                    dst_prefix: int = 0, ifindex: int = 0) -> None:
        """Add a route to ``dst/dst_prefix`` (default route when dst is None) via ``gw``."""
        table = self.core.routes4 if family == _socket.AF_INET else self.core.routes6
        size = 4 if family == _socket.AF_INET else 16
        gateway = _packed(family, gw) if gw is not None else None
        target = _packed(family, dst) if dst is not None else b"\0" * size
        with self.lock:
            if not ifindex:
                if gateway is None:
                    raise OSError(errno.EINVAL, "a route needs a gateway or an interface")
                route = table.lookup(gateway)
                if route is None or route.gateway is not None:
                    raise OSError(errno.ENETUNREACH, "gateway is not on a connected network")
                ifindex = route.ifindex
            self._iface(ifindex)
            table.add(Route(target, dst_prefix, gateway, ifindex, 0 if gateway is None else 1))

    def iproute_del(self, family: int, gw: str | bytes | None, dst: str | bytes | None = None,
                    dst_prefix: int = 0, ifindex: int = 0) -> None:
        """Remove a route."""
        table = self.core.routes4 if family == _socket.AF_INET else self.core.routes6
        size = 4 if family == _socket.AF_INET else 16
        gateway = _packed(family, gw) if gw is not None else None
        target = _packed(family, dst) if dst is not None else b"\0" * size
        with self.lock:
            if not table.remove(target, dst_prefix, gateway, ifindex):
                raise OSError(errno.ESRCH, "No such process (route not found)")

    def iplink_add_vde(self, ifindex: int = -1, vnl: str = "", ifname: str | None = None,
                       mac: str | bytes | None = None) -> int:
        """Add an interface on ``vnl`` (``NAME:VNL`` names it); returns its index."""
        name, text = split_ifname(vnl)
        name = ifname or name
        if name is not None and self.core.iface_by_name(name) is not None:
            raise ConfigError(f"interface name {name!r} is already in use")
        # the plug is opened and its descriptors registered without the stack's lock: the engine
        # thread may be waiting for that lock while it is asked to (un)register a reader
        plug = open_plug(text)
        try:
            with self.lock:
                core = self.core
                if name is None:
                    n = 0
                    while core.iface_by_name(f"vde{n}") is not None:
                        n += 1
                    name = f"vde{n}"
                if core.iface_by_name(name) is not None:
                    raise ConfigError(f"interface name {name!r} is already in use")
                if mac is None:
                    raw = bytearray(core.rng.getrandbits(8) for _ in range(6))
                    raw[0] = (raw[0] | 0x02) & 0xFE
                    macb = bytes(raw)
                else:
                    macb = parse_mac(mac)
                # a TAP with offloads accepts 64 KiB frames but its link MTU is what counts
                mtu = min(int(getattr(plug, "link_mtu", plug.mtu)), plug.mtu, 65535)
                iface = core.add_interface(name, macb, mtu, vnl=text,
                                           index=ifindex if ifindex > 0 else 0)
                iface.rx_csum_trusted = bool(getattr(plug, "rx_csum_trusted", False))
                iface.gso_max_size = min(int(getattr(plug, "gso_max_size", 0)), 65535)
                iface.tx_csum_offload = bool(getattr(plug, "tx_csum_offload", False))
        except BaseException:
            plug.close()
            raise
        self.runtime.attach(iface.index, plug)
        return iface.index

    def iplink_del(self, ifname: str | None = None, ifindex: int = -1) -> None:
        """Remove an interface (by name or index) and close its plug."""
        with self.lock:
            if ifname is not None:
                ifindex = self.if_nametoindex(ifname)
            iface = self._iface(ifindex)
            if iface.loopback:
                raise OSError(errno.EPERM, "the loopback interface cannot be removed")
            self.core.del_interface(ifindex)
        plug = self.runtime.detach(ifindex)
        if plug is not None:
            plug.close()

    @property
    def forwarding(self) -> bool:
        """Router mode (IPv4 and IPv6 forwarding); off by default."""
        return self.core.forwarding

    @forwarding.setter
    def forwarding(self, value: bool) -> None:
        with self.lock:
            self.core.forwarding = bool(value)

    # -- iothconf -------------------------------------------------------------------------
    def config(self, text: str) -> None:
        """Apply an iothconf string (see ``shared/specs/ioth.md`` section 2).

        Options apply to ``iface=`` (default vde0) or ``ifindex=``; ``tcp_*`` tags change the
        stack-wide TCP policy (:attr:`tcp_policy`) used by connections and listeners opened
        afterwards.  ``ip=`` also brings the
        link up unless ``eth``/``-eth`` says otherwise; ``forward`` turns router mode on;
        dhcp, dhcp6, rd, slaac and auto* raise ConfigError ("not yet supported").
        """
        cfg = parse_config(text)
        for method in cfg.autoconf:
            raise ConfigError(f"config: {_UNSUPPORTED[method]} autoconfiguration is not yet "
                              f"supported by ioth stacks (use ip=, gw=)")
        for v in cfg.vnl:
            self.iplink_add_vde(-1, v)
        with self.lock:
            if cfg.ifindex is not None:
                try:
                    iface = self._iface(cfg.ifindex)
                except OSError:
                    raise ConfigError(f"config: no interface with ifindex {cfg.ifindex}") from None
            else:
                name = cfg.iface or "vde0"
                found = self.core.iface_by_name(name)
                if found is None:
                    needs_iface = (cfg.eth is not None or cfg.mac or cfg.ips or cfg.mtu
                                   or cfg.gws)
                    if needs_iface:
                        raise ConfigError(f"config: no interface named {name!r}")
                    found = self.core.ifaces[1]  # only stack-wide options follow
                iface = found
            now = self.now()
            if cfg.fqdn is not None:
                self.fqdn = cfg.fqdn
            if cfg.mac is not None:
                iface.mac = cfg.mac
            elif cfg.fqdn is not None and cfg.eth:
                iface.mac = hash_mac(cfg.fqdn, cfg.password)
            if cfg.mtu is not None:
                self.linksetmtu(iface.index, cfg.mtu)
            if cfg.forward is not None:
                self.core.forwarding = cfg.forward
            if cfg.debug:
                logging.getLogger("ioth").setLevel(logging.DEBUG)
            if cfg.eth is not None:
                self.core.set_up(iface.index, cfg.eth, now)
            for remove, ip in cfg.ips:
                packed = ip.ip.packed
                plen = ip.network.prefixlen
                try:
                    if ip.version == 4:
                        if remove:
                            self.core.del_addr4(iface.index, packed, plen)
                        else:
                            self.core.add_addr4(iface.index, packed, plen, now)
                    elif remove:
                        self.core.ip6.del_addr(iface.index, packed, plen)
                    else:
                        self.core.ip6.add_addr(iface.index, packed, plen, now)
                except FileExistsError:
                    pass
                except FileNotFoundError:
                    raise ConfigError(f"config: -ip={ip}: address not assigned") from None
                if not remove and cfg.eth is None:
                    self.core.set_up(iface.index, True, now)
            for remove, gw in cfg.gws:
                table = self.core.routes4 if gw.version == 4 else self.core.routes6
                zero = b"\0" * (4 if gw.version == 4 else 16)
                if remove:
                    table.remove(zero, 0, gw.packed, 0)
                else:
                    table.add(Route(zero, 0, gw.packed, iface.index, 1))
            for remove, server in cfg.dns:
                text_addr = str(server)
                if remove:
                    if text_addr in self.dns:
                        self.dns.remove(text_addr)
                elif text_addr not in self.dns:
                    self.dns.append(text_addr)
            if cfg.domain is not None:
                self.domain = cfg.domain
            if cfg.stack is not None:
                self.impl = cfg.stack
            if cfg.tcp:
                self._apply_tcp_config(cfg.tcp, cfg.tcp_tags)
            self.runtime.flush()

    def _apply_tcp_config(self, changes: dict[str, str | None], tags: dict[str, str]) -> None:
        defaults = TcpPolicy()
        base = self.core.tcp.policy
        resets = {name: getattr(defaults, name) for name, text in changes.items() if text is None}
        texts = {name: text for name, text in changes.items() if text is not None}
        try:
            policy = TcpPolicy.from_options(texts, base.replace(**resets) if resets else base)
        except ConfigError as exc:
            named = ", ".join(tags[n] for n in changes)
            raise ConfigError(f"config {named}: {exc}") from None
        self.core.tcp.policy = policy

    ioth_config = config

    # -- sockets --------------------------------------------------------------------------
    def socket(self, family: int = _socket.AF_INET, type: int = _socket.SOCK_STREAM,
               proto: int = 0) -> IothSocket:
        """A socket on this stack: the Berkeley sockets of :mod:`ioth.sockets` (real file
        descriptors; TCP, UDP, ICMP echo with SOCK_DGRAM + IPPROTO_ICMP[V6])."""
        if self.closed:
            raise OSError(errno.EBADF, "stack is closed")
        from ioth.sockets import socket as berkeley_socket

        return berkeley_socket(self, family, type, proto)

    msocket = socket

    async def open_connection(self, host: str | None = None, port: int | str | None = None,
                              **kwargs: Any) -> Any:
        """``asyncio.open_connection`` over this stack: ``(reader, writer)``."""
        from ioth import aio

        return await aio.open_connection(self, host, port, **kwargs)

    async def start_server(self, client_connected_cb: Any, host: Any = None,
                           port: int | str | None = None, **kwargs: Any) -> Any:
        """``asyncio.start_server`` over this stack: an ``asyncio.Server``."""
        from ioth import aio

        return await aio.start_server(self, client_connected_cb, host, port, **kwargs)

    # -- TCP policy and introspection -----------------------------------------------------
    @property
    def tcp_policy(self) -> TcpPolicy:
        """The stack's default TCP policy (``tcp_*`` config tags); sockets override it per
        connection with setsockopt.  Assigning a :class:`TcpPolicy` affects new connections and
        listeners only."""
        with self.lock:
            return self.core.tcp.policy

    @tcp_policy.setter
    def tcp_policy(self, policy: TcpPolicy) -> None:
        policy.validate()
        with self.lock:
            self.core.tcp.policy = policy

    def tcp_connections(self) -> list[dict[str, Any]]:
        """Every TCP listener and connection as a plain dict (an ``ss -ti``-like snapshot).

        Keys: state, local, remote (``addr:port``, IPv6 in brackets), cc, cwnd and ssthresh
        (bytes; ssthresh None while unbounded), mss, srtt, rttvar, rto (seconds; srtt/rttvar
        None before a sample), retransmissions, rto_expirations, fast_recoveries, send_queue,
        recv_queue, bytes_in_flight, segments_in, segments_out, nodelay, keepalive,
        send_buffer, recv_buffer.  Listeners have state LISTEN, remote ``*:*``, accept_queue,
        backlog and syn_queue.
        """
        with self.lock:
            layer = self.core.tcp
            rows: list[dict[str, Any]] = []
            for lst in layer.listeners.values():
                rows.append({"state": "LISTEN", "local": _endpoint(lst.addr, lst.port),
                             "remote": "*:*", "accept_queue": len(lst.accept_queue),
                             "backlog": lst.backlog, "syn_queue": len(lst.syn_queue),
                             "cc": lst.policy.congestion_control})
            entries: list[Any] = list(layer.connections.values())
            entries += layer.time_wait.values()  # compact TIME-WAIT records
            for conn in entries:
                info = conn.info()
                policy = conn.policy
                rows.append({
                    "state": str(info.state), "local": _endpoint(*info.local),
                    "remote": _endpoint(*info.remote), "cc": info.cc, "cwnd": info.cwnd,
                    "ssthresh": None if info.ssthresh >= 1 << 60 else info.ssthresh,
                    "mss": info.mss, "srtt": info.srtt, "rttvar": info.rttvar, "rto": info.rto,
                    "retransmissions": info.retransmissions,
                    "rto_expirations": info.rto_expirations,
                    "fast_recoveries": info.fast_recoveries, "send_queue": info.send_queue,
                    "recv_queue": info.recv_queue, "bytes_in_flight": info.bytes_in_flight,
                    "segments_in": info.segments_in, "segments_out": info.segments_out,
                    "sack": info.sack, "timestamps": info.timestamps,
                    "nodelay": bool(getattr(conn, "nodelay", False)),
                    "keepalive": bool(getattr(conn, "keepalive", False)),
                    "send_buffer": policy.send_buffer,
                    "recv_buffer": policy.recv_buffer,
                })
            return rows

    # -- introspection --------------------------------------------------------------------
    def interfaces(self) -> list[dict[str, Any]]:
        """Every interface as a dictionary."""
        with self.lock:
            out = []
            for i in self.core.ifaces.values():
                plug = self.runtime.plugs.get(i.index)
                out.append({
                    "index": i.index, "name": i.name, "mac": mac_to_str(i.mac), "mtu": i.mtu,
                    "up": i.up, "loopback": i.loopback, "vnl": i.vnl,
                    "addresses": [str(a) for a in i.addrs4] + [str(a) for a in i.addrs6],
                    "rx_frames": i.rx_frames, "tx_frames": i.tx_frames,
                    "tx_dropped": i.tx_dropped,
                    "plug": plug.counters.as_dict() if plug is not None else None,
                })
            return out

    def groups(self) -> list[dict[str, Any]]:
        """Joined multicast groups (like ``ip maddr``): ifindex, ifname, family (4/6), group,
        users (reference count) and, for IPv4, the IGMP version reported with."""
        with self.lock:
            core = self.core
            now = self.now()
            out: list[dict[str, Any]] = []
            for i in core.ifaces.values():
                version = core.igmp.version(i, now)
                for g4, users in i.groups4.items():
                    out.append({"ifindex": i.index, "ifname": i.name, "family": 4,
                                "group": str(ipaddress.IPv4Address(g4)), "users": users,
                                "igmp_version": version})
                for g6, users in i.groups6.items():
                    out.append({"ifindex": i.index, "ifname": i.name, "family": 6,
                                "group": str(ipaddress.IPv6Address(g6)), "users": users})
            return out

    def addresses(self) -> list[dict[str, Any]]:
        """Every address: ifindex, ifname, family (4/6), address, prefixlen, state."""
        with self.lock:
            out: list[dict[str, Any]] = []
            for i in self.core.ifaces.values():
                for a4 in i.addrs4:
                    out.append({"ifindex": i.index, "ifname": i.name, "family": 4,
                                "address": str(ipaddress.IPv4Address(a4.addr)),
                                "prefixlen": a4.plen, "state": "preferred"})
                for a6 in i.addrs6:
                    out.append({"ifindex": i.index, "ifname": i.name, "family": 6,
                                "address": str(ipaddress.IPv6Address(a6.addr)),
                                "prefixlen": a6.plen, "state": a6.state})
            return out

    def routes(self) -> list[dict[str, Any]]:
        """Both routing tables, best match first."""
        with self.lock:
            out: list[dict[str, Any]] = []
            for family, table in ((4, self.core.routes4), (6, self.core.routes6)):
                conv = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
                for r in table.routes():
                    out.append({"family": family, "dst": str(conv(r.dst)), "prefixlen": r.plen,
                                "gateway": str(conv(r.gateway)) if r.gateway else None,
                                "ifindex": r.ifindex,
                                "ifname": self.core.ifaces[r.ifindex].name
                                if r.ifindex in self.core.ifaces else None,
                                "origin": r.origin, "metric": r.metric})
            return out

    def neighbours(self) -> list[dict[str, Any]]:
        """ARP and NDP cache entries."""
        with self.lock:
            out: list[dict[str, Any]] = []
            for family, cache in ((4, self.core.arp.cache), (6, self.core.ip6.ndp.cache)):
                conv = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
                for n in cache.entries.values():
                    out.append({"family": family, "ifindex": n.ifindex,
                                "address": str(conv(n.ip)),
                                "mac": mac_to_str(n.mac) if n.mac else None, "state": n.state,
                                "router": n.is_router})
            return out

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-protocol counters (``{"ipv4": {"rx": ...}, "udp": {...}, ...}``)."""
        with self.lock:
            return self.core.counters_by_protocol()

    def events(self) -> list[str]:
        """Notable events: duplicate addresses (DAD), ARP conflicts."""
        with self.lock:
            return list(self.core.events)

    def wait_dad(self, timeout: float = 5.0) -> bool:
        """Wait until no IPv6 address is tentative; True when all are settled."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(a["state"] == "tentative" for a in self.addresses()):
                return True
            time.sleep(0.05)
        return False


def _endpoint(addr: bytes, port: int) -> str:
    """``addr:port`` text of a TCP endpoint (``*`` for the wildcard, IPv6 in brackets)."""
    if len(addr) == 4:
        return f"{ipaddress.IPv4Address(addr)}:{port}"
    if len(addr) == 16:
        return f"[{ipaddress.IPv6Address(addr)}]:{port}"
    return f"*:{port}"


def msocket(stack: Stack | None, family: int = _socket.AF_INET,
            type: int = _socket.SOCK_STREAM, proto: int = 0) -> IothSocket:
    """``ioth.msocket(stack, family, type, proto)``: a socket on ``stack`` (None: the default
    stack, as libioth's ``ioth_msocket(NULL, ...)``)."""
    if stack is None:
        from ioth.sockets import get_default_stack

        stack = get_default_stack()
        if stack is None:
            raise OSError(errno.ENONET, "no default ioth stack (see ioth.set_default_stack)")
    return stack.socket(family, type, proto)
