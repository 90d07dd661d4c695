"""The ioth stack against the Linux kernel stack (issue 4 acceptance).

Each test creates its own network namespaces; the kernel side is a TAP inside a namespace, either
opened directly by the stack (``tap://NAME[netns=NS/up]``) or bridged to an ``ioth switch`` that
ioth stacks join with ``vde://DIR``.  Addresses come from the documentation ranges only.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioth
from tests.support.peers import (
    Netns,
    ioth_cmd,
    kernel_lan,
    netns,
    require_root,
    require_tools,
    stop_process,
    wait_for,
    wait_for_link,
)

pytestmark = pytest.mark.interop

CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
BAD = ("_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == 0 || "
       "udp.checksum.status == 0 || icmp.checksum.status == 0 || icmpv6.checksum.status == 0")


def tapname() -> str:
    return "it" + secrets.token_hex(4)


@contextlib.contextmanager
def capture(ns: Netns, ifname: str, path: Path) -> Iterator[None]:
    """tcpdump on ``ifname`` inside ``ns`` for the duration of the block (immediate mode:
    without it libpcap hands packets over in ring blocks that time out after a second, and a
    short capture stopped by SIGTERM can lose them all)."""
    proc = ns.popen(["tcpdump", "-U", "--immediate-mode", "-n", "-s", "0", "-i", ifname,
                     "-w", str(path)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: path.exists() and path.stat().st_size > 0, 10, what="tcpdump start")
    try:
        yield
    finally:
        time.sleep(0.3)
        stop_process(proc)


def assert_clean_capture(path: Path, min_packets: int = 10) -> None:
    """tshark dissects every packet: nothing malformed, no bad checksum."""
    total = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()
    assert len(total) >= min_packets
    bad = subprocess.run(["tshark", "-r", str(path), *CHECKS, "-Y", BAD], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert bad == "", bad
    good = subprocess.run(["tshark", "-r", str(path), *CHECKS, "-Y", "ip.checksum.status == 1"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert good  # the checks really ran


@pytest.fixture
def lan() -> Iterator[tuple[Netns, ioth.Stack, str]]:
    """A namespace whose TAP is the stack's vde0: kernel 192.0.2.1 / 2001:db8::1,
    ioth 192.0.2.2 / 2001:db8::2."""
    require_tools("ping")
    with kernel_lan("iost") as lan:
        yield lan


def test_kernel_pings_ioth_v4_v6_fragmented_and_caches_fill(
        lan: tuple[Netns, ioth.Stack, str], tmp_path: Path) -> None:
    require_tools("tcpdump", "tshark")
    ns, stack, tap = lan
    pcap = tmp_path / "ping.pcap"
    with capture(ns, tap, pcap):
        for argv in (["ping", "-c", "3", "-i", "0.2", "192.0.2.2"],
                     ["ping", "-c", "2", "-i", "0.2", "-s", "8000", "192.0.2.2"],
                     ["ping", "-6", "-c", "3", "-i", "0.2", "2001:db8::2"],
                     ["ping", "-6", "-c", "2", "-i", "0.2", "-s", "8000", "2001:db8::2"],
                     ["ping", "-c", "1", "-s", "65507", "192.0.2.2"],  # largest datagrams
                     ["ping", "-6", "-c", "1", "-s", "65487", "2001:db8::2"]):
            r = ns.run([*argv, "-W", "2"], check=False)
            assert r.returncode == 0, r.stdout + r.stderr
            assert " 0% packet loss" in r.stdout
        neigh = ns.run(["ip", "neigh", "show", "dev", tap]).stdout
    mac = stack.linkgetaddr(2)
    assert re.search(rf"192\.0\.2\.2 lladdr {mac} (REACHABLE|STALE|DELAY)", neigh), neigh
    assert re.search(rf"2001:db8::2 lladdr {mac} (REACHABLE|STALE|DELAY)", neigh), neigh
    ours = {(n["family"], n["address"]): n for n in stack.neighbours()}
    kmac = ns.run(["cat", f"/sys/class/net/{tap}/address"]).stdout.strip()
    assert ours[(4, "192.0.2.1")]["mac"] == kmac and ours[(6, "2001:db8::1")]["mac"] == kmac
    c = stack.counters()
    assert c["ipv4_reasm"]["reassembled"] == 3 and c["ipv6_reasm"]["reassembled"] == 3
    assert c["icmp4"]["tx_echo_reply"] == 6 and c["icmp6"]["tx_echo_reply"] == 6
    assert_clean_capture(pcap)


def test_dad_detects_duplicates_both_ways(lan: tuple[Netns, ioth.Stack, str]) -> None:
    ns, stack, tap = lan
    # the kernel owns 2001:db8::1: ioth's DAD for it must fail
    stack.ipaddr_add(10, "2001:db8::1", 64, 2)
    wait_for(lambda: any(a["address"] == "2001:db8::1" and a["state"] == "duplicate"
                         for a in stack.addresses()), 5, what="ioth DAD failure")
    assert any("duplicate address 2001:db8::1" in e for e in stack.events())
    # ioth owns 2001:db8::2: the kernel's DAD for it must fail (ioth answers the probe)
    ns.run(["ip", "addr", "add", "2001:db8::2/64", "dev", tap])
    wait_for(lambda: "dadfailed" in ns.run(["ip", "-6", "addr", "show", "dev", tap]).stdout,
             6, what="kernel DAD failure")


def test_udp_both_ways_with_socat_up_to_60000_bytes(
        lan: tuple[Netns, ioth.Stack, str], tmp_path: Path) -> None:
    require_tools("socat", "tcpdump", "tshark")
    ns, stack, tap = lan
    pcap = tmp_path / "udp.pcap"
    with capture(ns, tap, pcap):
        udp_both_ways(ns, stack, tmp_path)
    assert_clean_capture(pcap, 100)


def udp_both_ways(ns: Netns, stack: ioth.Stack, tmp_path: Path) -> None:
    """One datagram each way per size and family, checked byte for byte."""
    for family, kaddr, iaddr, kv in ((2, "192.0.2.1", "192.0.2.2", "UDP4"),
                                     (10, "2001:db8::1", "2001:db8::2", "UDP6")):
        for size in (1, 1472, 8000, 60000):
            payload = os.urandom(size)
            # ioth -> kernel: socat receives one datagram into a file
            out = tmp_path / f"in-{kv}-{size}"
            recv = ns.popen(["socat", "-b", "65536", "-u", f"{kv}-RECV:7000",
                             f"CREATE:{out}"])
            time.sleep(0.15)
            with stack.socket(family, 2) as s:
                host = f"[{kaddr}]" if family == 10 else kaddr
                s.sendto(payload, (kaddr, 7000))
                wait_for(lambda o=out, n=size: o.exists() and o.stat().st_size == n, 5,
                         what=f"socat got {size} bytes from ioth to {host}")
            stop_process(recv)
            assert out.read_bytes() == payload
            # kernel -> ioth: socat sends the file as one datagram
            src = tmp_path / f"out-{kv}-{size}"
            src.write_bytes(payload)
            with stack.socket(family, 2) as s:
                s.bind(("", 7001))
                s.settimeout(5)
                dest = f"[{iaddr}]" if family == 10 else iaddr
                ns.run(["socat", "-b", "65536", "-u", f"FILE:{src}", f"{kv}-SENDTO:{dest}:7001"])
                data, peer = s.recvfrom(65536)
            assert data == payload and peer[0] == kaddr


def test_ioth_ping_cli_and_ioth_node_through_ioth_switch(tmp_path: Path) -> None:
    require_root()
    require_tools("ping")
    with netns("iosw") as ns:
        tap = tapname()
        sw = subprocess.Popen(ioth_cmd("switch", str(tmp_path / "sw"), "--port",
                                       f"tap://{tap}[netns={ns.name}/up]"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
        try:
            wait_for_link(ns, tap)
            ns.sh(f"ip addr add 192.0.2.1/24 dev {tap}; ip addr add 2001:db8::1/64 dev {tap} "
                  f"nodad; ip link set {tap} up")
            wait_for(lambda: (tmp_path / "sw" / "ctl").exists(), 10, what="switch socket")
            vnl = f"vde://{tmp_path / 'sw'}"
            r = subprocess.run(ioth_cmd("ping", "--vnl", vnl, "--config",
                                        "eth,ip=192.0.2.10/24", "-c", "3", "-i", "0.2",
                                        "-s", "3000", "192.0.2.1"),
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "3 packets transmitted, 3 received" in r.stdout
            assert re.search(r"3008 bytes from 192\.0\.2\.1: icmp_seq=1 time=", r.stdout)
            r = subprocess.run(ioth_cmd("ping", "--vnl", vnl, "--config",
                                        "eth,ip=2001:db8::10/64", "-6", "-c", "2", "-i", "0.2",
                                        "2001:db8::1"),
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0 and "2 received" in r.stdout, r.stdout + r.stderr
            bad = subprocess.run(ioth_cmd("ping", "--vnl", vnl, "--config", "eth,dhcp",
                                          "192.0.2.1"), capture_output=True, text=True,
                                 timeout=30)
            assert bad.returncode == 2 and "not yet supported" in bad.stderr
            node = subprocess.Popen(ioth_cmd("node", "--vnl", vnl, "--config",
                                             "eth,ip=192.0.2.20/24,ip=2001:db8::20/64"),
                                    stdout=subprocess.PIPE, text=True, start_new_session=True)
            try:
                assert node.stdout is not None
                lines = []
                while not lines or "ready" not in lines[-1]:
                    line = node.stdout.readline()
                    assert line, "ioth node exited early"
                    lines.append(line)
                text = "".join(lines)
                assert "inet 192.0.2.20/24" in text and "inet6 2001:db8::20/64" in text
                assert ns.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.20"],
                              check=False).returncode == 0
                assert ns.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "8000",
                               "192.0.2.20"], check=False).returncode == 0
                assert ns.run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2",
                               "2001:db8::20"], check=False).returncode == 0
            finally:
                stop_process(node)
            assert node.returncode == 0
        finally:
            stop_process(sw)


@contextlib.contextmanager
def switch_with_tap(directory: Path, tap: str, ns: Netns) -> Iterator[str]:
    """An ``ioth switch`` process on ``directory`` with a TAP port inside ``ns``; yields the
    VNL ioth stacks use to join it."""
    sw = subprocess.Popen(ioth_cmd("switch", str(directory), "--port",
                                   f"tap://{tap}[netns={ns.name}/up]"),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
    try:
        wait_for_link(ns, tap)
        wait_for(lambda: (directory / "ctl").exists(), 10, what="switch socket")
        yield f"vde://{directory}"
    finally:
        stop_process(sw)


@pytest.mark.parametrize("medium", ["switch", "tap"])
def test_ioth_router_between_two_kernel_namespaces(tmp_path: Path, medium: str) -> None:
    """Two virtual networks (ioth switches with a kernel TAP port each, or the router's own
    TAPs); the ioth stack routes between them."""
    require_root()
    require_tools("ping", "traceroute", "tcpdump", "tshark")
    with netns("ior1") as ns1, netns("ior2") as ns2, contextlib.ExitStack() as es:
        t1, t2 = tapname(), tapname()
        if medium == "switch":
            vnls = [es.enter_context(switch_with_tap(tmp_path / "sw1", t1, ns1)),
                    es.enter_context(switch_with_tap(tmp_path / "sw2", t2, ns2))]
        else:
            vnls = [f"tap://{t1}[netns={ns1.name}/up]", f"tap://{t2}[netns={ns2.name}/up]"]
        router = ioth.Stack(vnls)
        try:
            router.config("iface=vde0,eth,ip=192.0.2.1/24,ip=2001:db8:1::1/64")
            router.config("iface=vde1,eth,ip=198.51.100.1/24,ip=2001:db8:2::1/64,forward")
            ns1.sh(f"ip addr add 192.0.2.2/24 dev {t1}; ip addr add 2001:db8:1::2/64 dev {t1} "
                   f"nodad; ip link set {t1} up; ip route add default via 192.0.2.1; "
                   f"ip -6 route add default via 2001:db8:1::1")
            ns2.sh(f"ip addr add 198.51.100.2/24 dev {t2}; ip addr add 2001:db8:2::2/64 "
                   f"dev {t2} nodad; ip link set {t2} up; ip route add default via "
                   f"198.51.100.1; ip -6 route add default via 2001:db8:2::1")
            assert router.wait_dad(5)
            pcap = tmp_path / "router.pcap"
            with capture(ns1, t1, pcap):
                for argv in (["ping", "-c", "2", "-i", "0.2", "198.51.100.2"],
                             ["ping", "-c", "2", "-i", "0.2", "-s", "4000", "198.51.100.2"],
                             ["ping", "-6", "-c", "2", "-i", "0.2", "2001:db8:2::2"]):
                    r = ns1.run([*argv, "-W", "2"], check=False)
                    assert r.returncode == 0, r.stdout + r.stderr
                tr = ns1.run(["traceroute", "-n", "-q", "1", "-w", "2", "-m", "4",
                              "198.51.100.2"], check=False)
                hops = [ln.split()[1] for ln in tr.stdout.splitlines()[1:] if ln.strip()]
                assert hops[:2] == ["192.0.2.1", "198.51.100.2"], tr.stdout
                tr6 = ns1.run(["traceroute", "-6", "-n", "-q", "1", "-w", "2", "-m", "4",
                               "2001:db8:2::2"], check=False)
                hops6 = [ln.split()[1] for ln in tr6.stdout.splitlines()[1:] if ln.strip()]
                assert hops6[:2] == ["2001:db8:1::1", "2001:db8:2::2"], tr6.stdout
                probe = ("import socket,sys\n"
                         "for fam, dst in ((socket.AF_INET, '198.51.100.2'),"
                         " (socket.AF_INET6, '2001:db8:2::2'), (socket.AF_INET, '192.0.2.1')):\n"
                         "    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(3)\n"
                         "    s.connect((dst, 9)); s.send(b'hello')\n"
                         "    try:\n"
                         "        s.recv(10); print('no error')\n"
                         "    except ConnectionRefusedError:\n"
                         "        print('ECONNREFUSED')\n")
                out = ns1.run([sys.executable, "-c", probe]).stdout.split()
                assert out == ["ECONNREFUSED"] * 3
            c = router.counters()
            assert c["ipv4"]["forwarded"] >= 4 and c["ipv6"]["forwarded"] >= 2
            assert c["ipv4"]["fwd_ttl_exceeded"] >= 1 and c["ipv6"]["fwd_hop_limit_exceeded"] >= 1
            assert_clean_capture(pcap, 20)
        finally:
            router.close()


def test_capture_check_can_fail(tmp_path: Path) -> None:
    """Negative control: a capture with one bad UDP checksum is rejected by the check above."""
    require_tools("tshark")
    from scapy.layers.inet import IP, UDP  # type: ignore[import-untyped]
    from scapy.layers.l2 import Ether  # type: ignore[import-untyped]
    from scapy.utils import wrpcap  # type: ignore[import-untyped]

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    good = [eth / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"x"] * 11
    bad = eth / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2, chksum=0x1234)
    wrpcap(str(tmp_path / "good.pcap"), good)
    assert_clean_capture(tmp_path / "good.pcap")
    wrpcap(str(tmp_path / "bad.pcap"), [*good, bad / b"x"])
    with pytest.raises(AssertionError):
        assert_clean_capture(tmp_path / "bad.pcap")


def test_ioth_stack_on_debian_vde_switch_with_kernel_tap(tmp_path: Path) -> None:
    """Debian's vde_switch (run inside the namespace, owning a TAP there) joins the kernel and an
    ioth stack: pings both ways, IPv4 and IPv6."""
    require_root()
    require_tools("vde_switch", "ping")
    with netns("iovd") as ns:
        tap = tapname()
        directory = tmp_path / "vsw"
        sw = ns.popen(["vde_switch", "-s", str(directory), "-t", tap], stdin=subprocess.PIPE,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: (directory / "ctl").exists(), 10, what="vde_switch ctl socket")
            wait_for_link(ns, tap)
            ns.sh(f"ip addr add 203.0.113.1/24 dev {tap}; ip addr add 2001:db8:3::1/64 "
                  f"dev {tap} nodad; ip link set {tap} up")
            with ioth.Stack(f"vde://{directory}",
                            "eth,ip=203.0.113.2/24,ip=2001:db8:3::2/64") as stack:
                assert stack.wait_dad(5)
                for argv in (["ping", "-c", "2", "-i", "0.2", "-s", "3000", "203.0.113.2"],
                             ["ping", "-6", "-c", "2", "-i", "0.2", "2001:db8:3::2"]):
                    r = ns.run([*argv, "-W", "2"], check=False)
                    assert r.returncode == 0, r.stdout + r.stderr
                for family, dst, proto in ((2, "203.0.113.1", 1), (10, "2001:db8:3::1", 58)):
                    with stack.socket(family, 2, proto) as s:
                        s.settimeout(3)
                        s.sendto(bytes((8 if family == 2 else 128, 0, 0, 0, 0, 0, 0, 9)) +
                                 b"vde", (dst, 0))
                        data, src = s.recvfrom(100)
                        assert data.endswith(b"vde") and src[0] == dst
        finally:
            stop_process(sw)
