"""Per-stack name resolution: literal addresses, hosts-file style static entries, DNS over the
stack itself (servers from the stack's ``dns=`` configuration), and ``getaddrinfo`` /
``getnameinfo`` / ``gethostbyname`` with the stdlib's signatures and errors.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import socket as _socket
import struct
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ioth.stack.stack import Stack

MAX_HOSTS = 65536
DNS_TIMEOUT = 2.0
DNS_TRIES = 2

AddrInfo = tuple[_socket.AddressFamily, _socket.SocketKind, int, str, tuple[Any, ...]]


class Resolver:
    """Names of one stack: static entries first, then DNS over the stack."""

    def __init__(self, stack: Stack) -> None:
        self._stack = weakref.ref(stack)
        self._lock = threading.Lock()
        self.hosts: dict[str, list[bytes]] = {
            "localhost": [b"\x7f\0\0\1", b"\0" * 15 + b"\1"],
            "ip6-localhost": [b"\0" * 15 + b"\1"],
        }
        self.dns_queries = 0
        self.dns_failures = 0

    # -- static entries --------------------------------------------------------------------
    def add(self, name: str, *addresses: str) -> None:
        """Add static entries: ``add("www.example", "192.0.2.1", "2001:db8::1")``."""
        key = name.lower().rstrip(".")
        packed = [ipaddress.ip_address(a).packed for a in addresses]
        with self._lock:
            if key not in self.hosts and len(self.hosts) >= MAX_HOSTS:
                raise OSError(errno.ENOSPC, f"resolver: more than {MAX_HOSTS} names")
            lst = self.hosts.setdefault(key, [])
            lst.extend(p for p in packed if p not in lst)

    def remove(self, name: str) -> None:
        """Forget a static name."""
        with self._lock:
            self.hosts.pop(name.lower().rstrip("."), None)

    def load_hosts(self, text_or_path: str | os.PathLike[str]) -> int:
        """Add the entries of a hosts file (``ADDRESS NAME [ALIAS...]`` lines; a path or text).

        Returns the number of names added.
        """
        text = str(text_or_path)
        if "\n" not in text and Path(text).is_file():
            text = Path(text).read_text()
        count = 0
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2:
                continue
            try:
                ipaddress.ip_address(fields[0].split("%")[0])
            except ValueError:
                continue
            for name in fields[1:]:
                self.add(name, fields[0].split("%")[0])
                count += 1
        return count

    # -- lookups -----------------------------------------------------------------------------
    def lookup(self, name: str, family: int = 0) -> list[bytes]:
        """Packed addresses of ``name`` (literal, static, then DNS), filtered by family."""
        want = {0: (4, 16), _socket.AF_INET: (4,), _socket.AF_INET6: (16,)}.get(family, (4, 16))
        try:
            ip = ipaddress.ip_address(name.split("%")[0])
            return [ip.packed] if len(ip.packed) in want else []
        except ValueError:
            pass
        key = name.lower().rstrip(".")
        stack = self._stack()
        with self._lock:
            found = list(self.hosts.get(key, ()))
        if not found and stack is not None and stack.fqdn and key == stack.fqdn.lower():
            found = [ipaddress.ip_address(a["address"]).packed for a in stack.addresses()
                     if a["ifname"] != "lo"]
        if not found and stack is not None and stack.dns:
            found = self._dns(stack, key, want)
        return [a for a in found if len(a) in want]

    def reverse(self, packed: bytes) -> str | None:
        """A static name of ``packed``, or None."""
        with self._lock:
            for name, addrs in self.hosts.items():
                if packed in addrs:
                    return name
        return None

    # -- DNS over the stack ------------------------------------------------------------------
    def _dns(self, stack: Stack, name: str, want: tuple[int, ...]) -> list[bytes]:
        names = [name]
        if "." not in name and stack.domain:
            names.insert(0, f"{name}.{stack.domain}")
        out: list[bytes] = []
        for qname in names:
            for qtype in ((1,) if want == (4,) else (28,) if want == (16,) else (1, 28)):
                out.extend(self._query(stack, qname, qtype))
            if out:
                break
        return out

    def _query(self, stack: Stack, qname: str, qtype: int) -> list[bytes]:
        rng = random.Random()
        for server in stack.dns:
            family = _socket.AF_INET6 if ":" in server else _socket.AF_INET
            for _ in range(DNS_TRIES):
                qid = rng.getrandbits(16)
                query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _qname(qname) + \
                    struct.pack("!HH", qtype, 1)
                self.dns_queries += 1
                try:
                    with stack.socket(family, _socket.SOCK_DGRAM) as s:
                        s.settimeout(DNS_TIMEOUT)
                        s.connect((server, 53))
                        s.send(query)
                        while True:
                            reply = s.recv(4096)
                            if len(reply) >= 12 and struct.unpack_from("!H", reply)[0] == qid:
                                return _answers(reply, qtype)
                except (OSError, ValueError, struct.error):
                    self.dns_failures += 1
        return []


def _qname(name: str) -> bytes:
    out = b""
    for label in name.encode("idna").split(b"."):
        if label:
            out += bytes((len(label),)) + label
    return out + b"\0"


def _skip_name(msg: bytes, off: int) -> int:
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += n + 1


def _answers(msg: bytes, qtype: int) -> list[bytes]:
    _, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", msg)
    if flags & 0x000F:
        return []
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(msg, off)
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", msg, off)
        off += 10
        if rtype == qtype and rdlen == (4 if qtype == 1 else 16):
            out.append(bytes(msg[off:off + rdlen]))
        off += rdlen
    return out


class _Resolvers:
    lock = threading.Lock()
    by_stack: weakref.WeakKeyDictionary[Any, Resolver] = weakref.WeakKeyDictionary()


def resolver_for(stack: Stack) -> Resolver:
    """The resolver of ``stack`` (created on first use)."""
    with _Resolvers.lock:
        r = _Resolvers.by_stack.get(stack)
        if r is None:
            r = Resolver(stack)
            _Resolvers.by_stack[stack] = r
        return r


# -- stdlib-compatible functions ----------------------------------------------------------------

def _port(port: Any, socktype: int) -> int:
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode()
    if isinstance(port, int):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        proto = "udp" if socktype == _socket.SOCK_DGRAM else "tcp"
        try:
            return _socket.getservbyname(port, proto)
        except OSError:
            raise _socket.gaierror(_socket.EAI_SERVICE, "Servname not supported for ai_socktype"
                                   ) from None
    raise TypeError("getaddrinfo() argument 2 must be integer or string")


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def _is_service_name(port: Any) -> bool:
    if isinstance(port, bytes):
        port = port.decode()
    return isinstance(port, str) and not port.isdigit()


def _has_service(port: Any, proto: int) -> bool:
    name = port.decode() if isinstance(port, bytes) else str(port)
    try:
        _socket.getservbyname(name, "tcp" if proto == _socket.IPPROTO_TCP else "udp")
    except OSError:
        return False
    return True


def getaddrinfo(stack: Stack, host: Any, port: Any, family: int = 0, type: int = 0,
                proto: int = 0, flags: int = 0) -> list[AddrInfo]:
    """``socket.getaddrinfo`` over ``stack``."""
    from ioth.sockets.addr import format_address

    if family not in (0, _socket.AF_INET, _socket.AF_INET6):
        raise _socket.gaierror(_socket.EAI_FAMILY, "ai_family not supported")
    if isinstance(host, bytes):
        host = host.decode("idna")
    if host is None and port is None:  # glibc's order of checks
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
    if proto and ((type == _socket.SOCK_STREAM and proto != _socket.IPPROTO_TCP) or
                  (type == _socket.SOCK_DGRAM and proto not in (_socket.IPPROTO_UDP, 136))):
        raise _socket.gaierror(_socket.EAI_SOCKTYPE, "ai_socktype not supported")
    num = _port(port, type)
    kinds: list[tuple[int, int]]
    if type:
        kinds = [(type, proto or (_socket.IPPROTO_TCP if type == _socket.SOCK_STREAM else
                                  _socket.IPPROTO_UDP if type == _socket.SOCK_DGRAM else 0))]
    else:
        kinds = [(_socket.SOCK_STREAM, _socket.IPPROTO_TCP), (_socket.SOCK_DGRAM,
                                                               _socket.IPPROTO_UDP),
                 (_socket.SOCK_RAW, 0)]
        if proto:
            kinds = [k for k in kinds if k[1] == proto] or [(_socket.SOCK_RAW, proto)]
        if _is_service_name(port):  # like glibc: only the protocols the service is listed for
            kinds = [k for k in kinds if k[0] != _socket.SOCK_RAW and _has_service(port, k[1])]
            if not kinds:
                raise _socket.gaierror(_socket.EAI_SERVICE, "Servname not supported for "
                                                            "ai_socktype")
    if host == "":
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
    if host is None:
        if flags & _socket.AI_PASSIVE:  # like glibc: "::" first (dual-stack servers use it)
            packed = [b"\0" * 16, b"\0" * 4]
        else:
            packed = [b"\x7f\0\0\1", b"\0" * 15 + b"\1"]
        if family:
            packed = [p for p in packed if (len(p) == 4) == (family == _socket.AF_INET)]
    else:
        if flags & _socket.AI_NUMERICHOST:
            try:
                ipaddress.ip_address(str(host).split("%")[0])
            except ValueError:
                raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known"
                                       ) from None
        packed = resolver_for(stack).lookup(str(host), family)
        if not packed:
            if family and _is_literal(str(host)):
                raise _socket.gaierror(_socket.EAI_ADDRFAMILY,
                                       "Address family for hostname not supported")
            raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
    canon = str(host) if flags & _socket.AI_CANONNAME and host else ""
    out: list[AddrInfo] = []
    for addr in packed:
        fam = _socket.AF_INET if len(addr) == 4 else _socket.AF_INET6
        scope = 0
        if fam == _socket.AF_INET6 and isinstance(host, str) and "%" in host:
            zone = host.partition("%")[2]
            scope = int(zone) if zone.isdigit() else stack.if_nametoindex(zone)
        sa = format_address(fam, addr, num, scope)
        for st, pr in kinds:
            out.append((_socket.AddressFamily(fam), _socket.SocketKind(st), pr, canon, sa))
            canon = ""
    return out


def gethostbyname(stack: Stack, name: str) -> str:
    """``socket.gethostbyname`` over ``stack`` (IPv4 only)."""
    addrs = resolver_for(stack).lookup(name, _socket.AF_INET) if name else [b"\0" * 4]
    if not addrs:
        if _is_literal(name):
            raise _socket.gaierror(_socket.EAI_ADDRFAMILY,
                                   "Address family for hostname not supported")
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
    return str(ipaddress.IPv4Address(addrs[0]))


def gethostbyname_ex(stack: Stack, name: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyname_ex`` over ``stack``."""
    addrs = resolver_for(stack).lookup(name, _socket.AF_INET)
    if not addrs:
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
    return name, [], [str(ipaddress.IPv4Address(a)) for a in addrs]


def gethostbyaddr(stack: Stack, ip: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyaddr`` over ``stack`` (static entries only)."""
    r = resolver_for(stack)
    try:
        packed = ipaddress.ip_address(ip).packed
    except ValueError:
        addrs = r.lookup(ip)
        if not addrs:
            raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known") from None
        packed = addrs[0]
    name = r.reverse(packed)
    if name is None:
        raise _socket.herror(1, "Unknown host")
    return name, [], [str(ipaddress.ip_address(packed))]


def getnameinfo(stack: Stack, sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
    """``socket.getnameinfo`` over ``stack``."""
    host, port = sockaddr[0], sockaddr[1]
    packed = ipaddress.ip_address(str(host).split("%")[0]).packed
    name = None if flags & _socket.NI_NUMERICHOST else resolver_for(stack).reverse(packed)
    if name is None:
        if flags & _socket.NI_NAMEREQD:
            raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
        name = str(host)
    serv = str(port)
    if not flags & _socket.NI_NUMERICSERV:
        try:
            serv = _socket.getservbyport(port, "udp" if flags & _socket.NI_DGRAM else "tcp")
        except OSError:
            pass
    return name, serv
