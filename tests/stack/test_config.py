"""iothconf parsing, hash addresses, VNL interface-name prefixes."""

from __future__ import annotations

import ipaddress

import pytest

from ioth.errors import ConfigError
from ioth.stack.config import parse_config
from ioth.stack.hashaddr import eui64_iid, hash_address, hash_mac, mac_to_str, parse_mac
from ioth.stack.stack import split_ifname


@pytest.mark.parametrize(("base", "name", "expected"), [
    ("2000:760::", "test.v2.cs.unibo.it", "2000:760::68d6:2fac:95a:5a2e"),
    ("fc00::", "hash.test.local", "fc00::f4b7:a5a9:259b:fb70"),
    ("fc00::", "renzo.hash.local", "fc00::4cc:8049:6765:d03a"),
    ("fc00::", "renzo.hash.local.", "fc00::4cc:8049:6765:d03a"),
])
def test_hash_address_vectors(base: str, name: str, expected: str) -> None:
    assert ipaddress.IPv6Address(hash_address(base, name)) == ipaddress.IPv6Address(expected)


def test_hash_address_password_and_otip_change_only_low_bits() -> None:
    a = hash_address("fc00::", "x.example", "pw", 1234)
    b = hash_address("fc00::", "x.example", "pw", 1235)
    assert a[:8] == b[:8] == ipaddress.IPv6Address("fc00::").packed[:8]
    assert a != b and a[8] & 3 == 0


def test_hash_mac_is_local_unicast_and_stable() -> None:
    mac = hash_mac("host.example.org")
    assert len(mac) == 6 and mac[0] & 2 and not mac[0] & 1
    assert hash_mac("host.example.org.") == mac
    assert hash_mac("host.example.org", "secret") != mac


def test_eui64_and_mac_text() -> None:
    mac = parse_mac("52:54:00:12:34:56")
    assert eui64_iid(mac) == bytes.fromhex("505400fffe123456")
    assert mac_to_str(mac) == "52:54:00:12:34:56"
    with pytest.raises(ValueError):
        parse_mac("52:54:00:12:34")


def test_parse_full_config() -> None:
    cfg = parse_config("eth, ip=192.0.2.1 ip=2001:db8::1;gw=192.0.2.254\nDNS=192.0.2.53 "
                       "domain=example.org mtu=9000 mac=02:00:00:00:00:01 iface=vde1")
    assert cfg.eth is True and cfg.iface == "vde1" and cfg.mtu == 9000
    assert [str(ip) for _, ip in cfg.ips] == ["192.0.2.1/24", "2001:db8::1/64"]
    assert [str(g) for _, g in cfg.gws] == ["192.0.2.254"]
    assert [str(d) for _, d in cfg.dns] == ["192.0.2.53"]
    assert cfg.domain == "example.org" and cfg.mac == bytes.fromhex("020000000001")


def test_negation_and_autoconf() -> None:
    cfg = parse_config("-eth,-ip=192.0.2.1/25,auto")
    assert cfg.ips == [(True, ipaddress.ip_interface("192.0.2.1/25"))]
    assert cfg.autoconf == ["dhcp", "dhcp6", "rd"] and cfg.eth is True
    assert parse_config("auto6").autoconf == ["dhcp6", "rd"]
    assert parse_config("-eth").eth is False


@pytest.mark.parametrize(("text", "fragment"), [
    ("eth,bogus=1", "bogus"),
    ("ip=192.0.2.300", "ip="),
    ("ip=192.0.2.1/33", "33"),
    ("mtu=20", "mtu"),
    ("mac=01:00:00:00:00:01", "multicast"),
    ("eth=1", "eth"),
    ("gw", "gw"),
    ("ifindex=x", "ifindex"),
])
def test_config_errors_name_the_option(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config(text)


@pytest.mark.parametrize(("vnl", "name", "rest"), [
    ("vde:///tmp/sw", None, "vde:///tmp/sw"),
    ("eth1:vde:///tmp/sw", "eth1", "vde:///tmp/sw"),
    ("/tmp/sw", None, "/tmp/sw"),
    ("lan:/tmp/sw", "lan", "/tmp/sw"),
    ("tap://t0", None, "tap://t0"),
    ("x:tap://t0", "x", "tap://t0"),
    ("/a:b", None, "/a:b"),
])
def test_split_ifname(vnl: str, name: str | None, rest: str) -> None:
    assert split_ifname(vnl) == (name, rest)
