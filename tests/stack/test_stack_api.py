"""The public ``ioth.Stack`` API with real threads: loopback, two stacks over ptp://, sockets,
errors, configuration calls and introspection."""

from __future__ import annotations

import errno
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioth
from ioth.errors import ConfigError


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ioth.Stack, ioth.Stack]]:
    path = tmp_path / "ptp"
    a = ioth.Stack(f"ptp://{path}", "eth,ip=192.0.2.1/24,ip=2001:db8::1/64")
    b = ioth.Stack(f"lan:ptp://{path}", "iface=lan,eth,ip=192.0.2.2/24,ip=2001:db8::2/64")
    try:
        assert a.wait_dad() and b.wait_dad()
        yield a, b
    finally:
        a.close()
        b.close()


def test_loopback_only_stack() -> None:
    with ioth.Stack() as s:
        names = [i["name"] for i in s.interfaces()]
        assert names == ["lo"] and s.if_nametoindex("lo") == 1
        assert {a["address"] for a in s.addresses()} == {"127.0.0.1", "::1"}
        with s.socket(socket.AF_INET6, socket.SOCK_DGRAM) as srv, \
                ioth.msocket(s, socket.AF_INET6, socket.SOCK_DGRAM) as cli:
            srv.bind(("::1", 9999))
            cli.sendto(b"v6", ("::1", 9999))
            srv.settimeout(2)
            data, addr = srv.recvfrom(100)
            assert data == b"v6" and addr[0] == "::1" and addr[1] == cli.getsockname()[1]


def test_udp_and_ping_between_two_stacks(pair: tuple[ioth.Stack, ioth.Stack]) -> None:
    a, b = pair
    assert b.if_nametoindex("lan") == 2
    srv = b.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("0.0.0.0", 5000))
    cli = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(range(256)) * 234  # 59904 bytes: 41 fragments
    cli.sendto(payload, ("192.0.2.2", 5000))
    srv.settimeout(5)
    data, peer = srv.recvfrom(65535)
    assert data == payload and peer[0] == "192.0.2.1"
    srv.sendto(b"back", peer)
    cli.settimeout(5)
    assert cli.recvfrom(10) == (b"back", ("192.0.2.2", 5000))
    ping = a.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    ping.settimeout(5)
    ping.sendto(struct.pack("!BBHHH", 128, 0, 0, 0, 42) + b"x" * 3000, ("2001:db8::2", 0))
    reply, src = ping.recvfrom(9000)
    assert reply[0] == 129 and struct.unpack_from("!H", reply, 6)[0] == 42
    assert len(reply) == 3008 and src[0] == "2001:db8::2"
    neigh = {(n["family"], n["address"]) for n in a.neighbours()}
    assert (4, "192.0.2.2") in neigh and (6, "2001:db8::2") in neigh
    counters = b.counters()
    assert counters["ipv4_reasm"]["reassembled"] == 1 and counters["udp"]["rx"] == 1


def test_socket_errors(pair: tuple[ioth.Stack, ioth.Stack]) -> None:
    a, _ = pair
    s1 = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s1.bind(("", 6000))
    s2 = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError) as exc:
        s2.bind(("192.0.2.1", 6000))
    assert exc.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as exc:
        s2.sendto(b"x" * 65508, ("192.0.2.2", 1))
    assert exc.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as exc:
        s2.sendto(b"x", ("203.0.113.1", 1))
    assert exc.value.errno == errno.ENETUNREACH
    s2.connect(("192.0.2.2", 9))
    s2.send(b"anyone?")
    s2.settimeout(5)
    with pytest.raises(OSError) as exc:
        s2.recv(10)
    assert exc.value.errno == errno.ECONNREFUSED
    s2.setblocking(False)
    with pytest.raises(BlockingIOError):
        s2.recv(10)
    s2.settimeout(0.05)
    with pytest.raises(TimeoutError):
        s2.recv(10)
    with pytest.raises(OSError) as exc:
        a.socket(socket.AF_INET, socket.SOCK_RAW, 0)
    assert exc.value.errno == errno.EPROTONOSUPPORT


def test_blocked_receiver_wakes_on_close(pair: tuple[ioth.Stack, ioth.Stack]) -> None:
    a, _ = pair
    s = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", 6100))
    errors: list[int] = []

    def reader() -> None:
        try:
            s.recv(10)
        except OSError as exc:
            errors.append(exc.errno or 0)

    t = threading.Thread(target=reader)
    t.start()
    s.close()
    t.join(5)
    assert errors == [errno.EBADF]


def test_configuration_calls_and_routes(pair: tuple[ioth.Stack, ioth.Stack]) -> None:
    a, b = pair
    idx = a.if_nametoindex("vde0")
    a.ipaddr_add(socket.AF_INET, "198.51.100.1", 24, idx)
    a.iproute_add(socket.AF_INET, "192.0.2.2", "203.0.113.0", 24)
    a.iproute_add(socket.AF_INET6, "2001:db8::2")
    routes = {(r["family"], r["dst"], r["prefixlen"], r["gateway"]) for r in a.routes()}
    assert (4, "203.0.113.0", 24, "192.0.2.2") in routes
    assert (6, "::", 0, "2001:db8::2") in routes
    assert (4, "198.51.100.0", 24, None) in routes
    a.iproute_del(socket.AF_INET, "192.0.2.2", "203.0.113.0", 24)
    with pytest.raises(OSError):
        a.iproute_del(socket.AF_INET, "192.0.2.2", "203.0.113.0", 24)
    a.ipaddr_del(socket.AF_INET, "198.51.100.1", 24, idx)
    a.linksetaddr(idx, "02:11:22:33:44:55")
    assert a.linkgetaddr(idx) == "02:11:22:33:44:55"
    a.linksetmtu(idx, 1400)
    assert a.interfaces()[1]["mtu"] == 1400
    for bad in (20, 9000):  # 9000: more than the ptp:// plug carries
        with pytest.raises(OSError):
            a.linksetmtu(idx, bad)
    with pytest.raises(OSError) as exc:
        a.if_nametoindex("nope")
    assert exc.value.errno == errno.ENODEV
    n = a.iplink_add_vde(-1, "extra:null://")
    assert a.if_indextoname(n) == "extra"
    a.config("iface=extra,eth,ip=203.0.113.9/24,fqdn=node.example")
    assert a.interfaces()[-1]["up"] and a.fqdn == "node.example"
    a.iplink_del("extra")
    assert [i["name"] for i in a.interfaces()] == ["lo", "vde0"]
    b.linksetupdown(2, 0)
    assert not b.interfaces()[1]["up"]


def test_config_errors_and_autoconf_not_yet_supported() -> None:
    with ioth.Stack("null://") as s:
        with pytest.raises(ConfigError, match="DHCPv4"):
            s.config("dhcp")
        with pytest.raises(ConfigError, match="frobnicate"):
            s.config("eth,frobnicate")
        with pytest.raises(ConfigError, match="vde7"):
            s.config("iface=vde7,eth")
        s.config("eth,mac=02:00:00:00:00:07,ip=192.0.2.7/25,gw=192.0.2.1,dns=192.0.2.53,"
                 "domain=example.org,mtu=1400")
        assert s.linkgetaddr(2) == "02:00:00:00:00:07" and s.dns == ["192.0.2.53"]
        assert any(r["gateway"] == "192.0.2.1" for r in s.routes())
        s.config("-ip=192.0.2.7/25,-gw=192.0.2.1,-dns=192.0.2.53")
        assert all(a["address"] != "192.0.2.7" for a in s.addresses())
        assert all(r["gateway"] != "192.0.2.1" for r in s.routes()) and s.dns == []
        s.config("forward")
        assert s.forwarding


def test_fqdn_gives_hash_mac() -> None:
    from ioth.stack.hashaddr import hash_mac, mac_to_str

    with ioth.Stack("null://", "eth,fqdn=host.example.org") as s:
        assert s.linkgetaddr(2) == mac_to_str(hash_mac("host.example.org"))


def test_many_stacks_share_one_engine() -> None:
    stacks = [ioth.Stack("null://", f"eth,ip=192.0.2.{i + 1}/24") for i in range(50)]
    try:
        assert len({id(s.runtime.engine) for s in stacks}) == 1
    finally:
        for s in stacks:
            s.close()
    with ioth.Stack("null://", own_thread=True) as own:
        assert own.runtime.own_engine


def test_jumbo_mtu_65535_no_fragmentation(tmp_path: Path) -> None:
    path = tmp_path / "jumbo"
    with ioth.Stack(f"ptp://{path}[mtu=65535]", "eth,ip=192.0.2.1/24") as a, \
            ioth.Stack(f"ptp://{path}[mtu=65535]", "eth,ip=192.0.2.2/24") as b:
        assert a.interfaces()[1]["mtu"] == 65535
        srv = b.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind(("", 5000))
        srv.settimeout(5)
        cli = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = b"j" * 65507
        cli.sendto(payload, ("192.0.2.2", 5000))
        assert srv.recv(65536) == payload
        assert "tx_fragments" not in a.counters()["ipv4"]
        assert b.counters()["ipv4_reasm"]["fragments"] == 0


def test_msocket_default_stack() -> None:
    with ioth.Stack() as s:
        ioth.set_default_stack(None)
        with pytest.raises(OSError):
            ioth.msocket(None, socket.AF_INET, socket.SOCK_DGRAM)
        ioth.set_default_stack(s)
        try:
            with ioth.msocket(None, socket.AF_INET, socket.SOCK_DGRAM) as u:
                assert u.fileno() >= 0  # ioth.sockets: a real descriptor
                u.bind(("127.0.0.1", 4000))
        finally:
            ioth.set_default_stack(None)
