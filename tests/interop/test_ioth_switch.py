"""``ioth switch`` against real peers: Debian's vde_plug, vde_switch, unixterm, dpipe, the Linux
kernel (TAPs and 802.1Q interfaces in namespaces created here), ping and iperf3.

Every process started here is stopped by pid; every namespace is deleted.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from ioth.net.plug import Plug
from ioth.net.registry import open_plug
from tests.support.peers import (
    Netns,
    ioth_cmd,
    missing,
    require_root,
    require_tools,
    stop_process,
    wait_for,
    wait_for_link,
)

pytestmark = pytest.mark.interop

NET = "198.51.100"


def _name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            stop_process(proc)


def start_ioth_switch(procs: list[subprocess.Popen[bytes]], directory: str,
                      *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(ioth_cmd("switch", directory, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("ioth switch:"), (line, proc.stderr.read() if proc.stderr else "")
    assert os.path.exists(os.path.join(directory, "ctl"))
    return proc


def start_vde_switch(procs: list[subprocess.Popen[bytes]], directory: str,
                     *args: str) -> subprocess.Popen[bytes]:
    # vde_switch 2.3.2 exits at EOF on stdin: give it a pipe that stays open
    proc = subprocess.Popen(["vde_switch", "-s", directory, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    procs.append(proc)
    wait_for(lambda: os.path.exists(os.path.join(directory, "ctl")), 10, what="vde_switch ctl")
    return proc


def join_tap(ns: Netns, vnl: str, ifname: str, addr: str | None, mtu: int | None = None
             ) -> subprocess.Popen[bytes]:
    """Debian's vde_plug, run inside ``ns``, joins ``vnl`` to a new TAP ``ifname`` there."""
    proc = ns.popen(["vde_plug", vnl, f"tap://{ifname}"], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_link(ns, ifname)
    if mtu is not None:
        ns.run(["ip", "link", "set", ifname, "mtu", str(mtu)])
    if addr is not None:
        ns.run(["ip", "addr", "add", addr, "dev", ifname])
    ns.run(["ip", "link", "set", ifname, "up"])
    return proc


def ping(ns: Netns, dst: str, count: int = 3, size: int | None = None,
         check: bool = True) -> bool:
    argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "2", "-n", "-q"]
    if size is not None:
        argv += ["-s", str(size), "-M", "do"]
    for _ in range(3 if check else 1):  # the first round may be spent on ARP
        if ns.run([*argv, dst], check=False, timeout=20).returncode == 0:
            return True
    if check:
        pytest.fail(f"ping {dst} from {ns.name} failed")
    return False


def iperf(server_ns: Netns, client_ns: Netns, addr: str, seconds: int = 2) -> float:
    """A TCP iperf3 run; returns bits per second received."""
    port = str(5201 + secrets.randbelow(2000))
    server = server_ns.popen(["iperf3", "-s", "-1", "-p", port], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            done = client_ns.run(["iperf3", "-c", addr, "-p", port, "-t", str(seconds), "-J"],
                                 check=False, timeout=seconds + 20)
            result = json.loads(done.stdout) if done.stdout.strip() else {}
            if done.returncode == 0 and "error" not in result:
                end = result.get("end", {})
                received = end.get("sum_received") or end.get("sum") or {}
                assert "bits_per_second" in received, done.stdout[-2000:]
                return float(received["bits_per_second"])
            time.sleep(0.1)  # the server was not listening yet
        pytest.fail(f"iperf3 failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    finally:
        stop_process(server)


def mgmt_session(sock_path: str, commands: list[str]) -> str:
    """Drive Debian's ``unixterm`` with stdin; returns what it printed."""
    script = "sleep 0.3; " + "; ".join(f"printf '%s\\n' '{c}'; sleep 0.3" for c in commands)
    proc = subprocess.run(["sh", "-c", f"({script}; sleep 1) | unixterm {sock_path}"],
                          capture_output=True, text=True, timeout=30)
    return proc.stdout


def talk(sock: socket.socket, line: str) -> str:
    """One command on a plain AF_UNIX management client; returns the reply up to the prompt."""
    sock.sendall(line.encode() + b"\n")
    data = b""
    while not data.endswith(b"\nvde$ "):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def open_mgmt(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(10)
    banner = b""
    while not banner.endswith(b"vde$ "):
        banner += s.recv(4096)
    return s


# -- (a) the acceptance test ------------------------------------------------------------------
def test_two_namespaces_through_ioth_switch(tmp_path: Path, procs: list[subprocess.Popen[bytes]],
                                            make_netns: Callable[[], Netns]) -> None:
    require_root()
    require_tools("vde_plug", "unixterm", "iperf3", "ping")
    sw, mgmt = str(tmp_path / "sw"), str(tmp_path / "mgmt")
    start_ioth_switch(procs, sw, "--mgmt", mgmt)
    ns1, ns2 = make_netns(), make_netns()
    t1, t2 = _name("it"), _name("it")
    join_tap(ns1, f"vde://{sw}", t1, f"{NET}.1/24")
    join_tap(ns2, f"vde://{sw}", t2, f"{NET}.2/24")
    ping(ns1, f"{NET}.2")
    bps = iperf(ns2, ns1, f"{NET}.2", seconds=2)
    assert bps > 1e6
    out = mgmt_session(mgmt, ["port/print", "hash/print"])
    assert "0000 DATA END WITH '.'" in out
    assert "1000 Success" in out
    ports = [block for block in out.split("Port 00")[1:]]
    assert len(ports) == 2, out
    for block in ports:
        pkts_in = int(block.split(" IN:  pkts")[1].split()[0])
        pkts_out = int(block.split(" OUT: pkts")[1].split()[0])
        assert pkts_in > 100 and pkts_out > 100, block
        assert "vdeplug" in block  # the endpoint description Debian's client sent
    assert out.count("Addr: ") >= 2  # both taps' MACs learnt


# -- (b) a Debian vde_switch and an ioth switch joined by a cable ------------------------------
def test_cable_between_vde_switch_and_ioth_switch(tmp_path: Path,
                                                  procs: list[subprocess.Popen[bytes]],
                                                  make_netns: Callable[[], Netns]) -> None:
    require_root()
    require_tools("vde_switch", "vde_plug", "dpipe", "ping")
    sw1, sw2 = str(tmp_path / "vde"), str(tmp_path / "ioth")
    start_vde_switch(procs, sw1)
    start_ioth_switch(procs, sw2)
    cable = subprocess.Popen(["dpipe", "vde_plug", f"vde://{sw1}", "=",
                              *ioth_cmd("plug", f"vde://{sw2}")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # dpipe makes its own process group
    procs.append(cable)
    ns1, ns2 = make_netns(), make_netns()
    join_tap(ns1, f"vde://{sw1}", _name("vc"), f"{NET}.11/24")
    join_tap(ns2, f"vde://{sw2}", _name("ic"), f"{NET}.12/24")
    ping(ns1, f"{NET}.12")
    ping(ns2, f"{NET}.11")
    assert cable.poll() is None


# -- (c) jumbo frames, trunks and VLAN isolation with real clients ----------------------------
def _collect(plug: Plug, want: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in plug.recv_frames():
            if want(frame):
                return frame
        time.sleep(0.01)
    pytest.fail("expected frame did not arrive")


def test_big_frames_between_ioth_plugs(tmp_path: Path,
                                       procs: list[subprocess.Popen[bytes]]) -> None:
    sw = str(tmp_path / "sw")
    start_ioth_switch(procs, sw)
    with ExitStack() as stack:
        p1 = stack.enter_context(open_plug(f"vde://{sw}[mtu=65535]"))
        p2 = stack.enter_context(open_plug(f"vde://{sw}[mtu=65535]"))
        small = stack.enter_context(open_plug(f"vde://{sw}"))  # mtu 1500
        src = bytes.fromhex("020000000011")
        dst = bytes.fromhex("020000000022")
        p2.send(b"\xff" * 6 + dst + b"\x88\xb5" + b"hello")  # dst learnt on p2's port
        _collect(p1, lambda f: f[6:12] == dst)
        for size in (9000, 65000, 65535 + 14):
            frame = dst + src + b"\x88\xb5" + os.urandom(size - 14)
            assert p1.send(frame)
            assert _collect(p2, lambda f, frame=frame: f == frame) == frame  # type: ignore[misc]
        # tagged frames cross between the two trunk ports unchanged
        tagged = dst + src + b"\x81\x00\x60\x2a" + b"\x88\xb5" + b"t" * 3000
        assert p1.send(tagged)
        assert _collect(p2, lambda f: f == tagged) == tagged
        # the 1500-byte client never saw a frame over 1518 bytes
        time.sleep(0.2)
        assert all(len(f) <= 1518 for f in small.recv_frames(1000))


def test_vlans_with_kernel_peers(tmp_path: Path, procs: list[subprocess.Popen[bytes]],
                                 make_netns: Callable[[], Netns]) -> None:
    """Access ports on VLANs 10 and 20, and trunk ports whose peers tag their frames.

    The tagging peers are Debian's ``vlan://`` plugin (libvdeplug_vlan) in front of the switch:
    their TAPs see VLAN 10 (or 20) untagged and the switch sees 802.1Q frames.
    """
    require_root()
    require_tools("vde_plug", "ping")
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/vdeplug/libvdeplug_vlan.so"):
        missing("libvdeplug-vlan is not installed")
    sw, mgmt = str(tmp_path / "sw"), str(tmp_path / "mgmt")
    start_ioth_switch(procs, sw, "--mgmt", mgmt)
    m = open_mgmt(mgmt)
    for cmd in ("vlan/create 10", "vlan/create 20"):
        assert "1000 Success" in talk(m, cmd)
    ns = [make_netns() for _ in range(5)]
    names = [_name("vl") for _ in range(5)]
    # ports 1 and 2: VLAN 10; port 3: VLAN 20, in the same IP subnet on purpose
    for i, addr in enumerate((f"{NET}.21/24", f"{NET}.22/24", f"{NET}.23/24")):
        join_tap(ns[i], f"vde://{sw}[{i + 1}]", names[i], addr)
    for port, vlan in ((1, 10), (2, 10), (3, 20)):
        assert "1000 Success" in talk(m, f"port/setvlan {port} {vlan}")
    ns[2].run(["ip", "addr", "add", "203.0.113.23/24", "dev", names[2]])
    # ports 4 and 5 keep the default configuration (trunks); their peers tag 10 and 20
    join_tap(ns[3], f"vlan://10{{vde://{sw}[4]}}", names[3], f"{NET}.31/24")
    join_tap(ns[4], f"vlan://20{{vde://{sw}[5]}}", names[4], "203.0.113.31/24")
    # same VLAN: works, and tags are added/removed between trunk and access ports
    ping(ns[0], f"{NET}.22")
    ping(ns[0], f"{NET}.31")
    ping(ns[2], "203.0.113.31")
    # different VLANs: nothing leaks, even within one IP subnet
    assert not ping(ns[0], f"{NET}.23", count=2, check=False)
    assert not ping(ns[2], f"{NET}.21", count=2, check=False)
    assert "lladdr" not in ns[0].run(["ip", "neigh", "show", f"{NET}.23"]).stdout
    assert not ping(ns[3], f"{NET}.23", count=2, check=False)  # tagged 10 never meets 20
    out = talk(m, "vlan/print")
    assert "VLAN 0010\n -- Port 0001 tagged=0 active=1 status=Forwarding\n" in out
    assert " -- Port 0004 tagged=1 active=1 status=Forwarding trunk" in out
    port4 = talk(m, "port/print 4")
    assert "1000 Success" in port4
    assert int(port4.split(" IN:  pkts")[1].split()[0]) > 0
    m.close()


@pytest.mark.parametrize("scheme", ["switch", "hub"])
def test_debian_vde_plug_joins_switch_plug(scheme: str, tmp_path: Path,
                                           make_netns: Callable[[], Netns]) -> None:
    """``switch://DIR`` (or ``hub://``) opened in this process; a kernel TAP joins it through
    Debian's vde_plug; ARP crosses both ways between the kernel and the plug."""
    require_root()
    require_tools("vde_plug", "ping")
    from scapy.layers.l2 import ARP, Ether

    node = str(tmp_path / "node")
    plug = open_plug(f"{scheme}://{node}")
    try:
        ns = make_netns()
        tap = _name("sp")
        join_tap(ns, f"vde://{node}", tap, f"{NET}.41/24")
        me_mac, me_ip = "02:00:00:00:00:99", f"{NET}.99"
        ns.popen(["ping", "-c", "20", "-i", "0.2", me_ip], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)

        def is_arp_for_me(frame: bytes) -> bool:
            pkt = Ether(frame)
            return ARP in pkt and pkt[ARP].op == 1 and pkt[ARP].pdst == me_ip

        request = Ether(_collect(plug, is_arp_for_me, 10))
        reply = (Ether(src=me_mac, dst=request.src)
                 / ARP(op=2, hwsrc=me_mac, psrc=me_ip, hwdst=request.src, pdst=f"{NET}.41"))
        assert plug.send(bytes(reply))
        wait_for(lambda: me_mac in ns.run(["ip", "neigh", "show", me_ip]).stdout, 10,
                 what="kernel learnt the plug's MAC")
        ports = plug.server.active_ports()  # type: ignore[attr-defined]
        assert len(ports) == 2
    finally:
        plug.close()
    assert not os.path.exists(node)


def test_port_group_with_debian_clients(tmp_path: Path, procs: list[subprocess.Popen[bytes]],
                                        make_netns: Callable[[], Netns]) -> None:
    """``--portgroup blue:30``: Debian clients asking for ``vde://DIR[blue]`` share VLAN 30."""
    require_root()
    require_tools("vde_plug", "ping")
    sw = str(tmp_path / "sw")
    start_ioth_switch(procs, sw, "--portgroup", "blue:30")
    assert os.path.exists(os.path.join(sw, "blue"))
    ns = [make_netns() for _ in range(3)]
    join_tap(ns[0], f"vde://{sw}[blue]", _name("pg"), f"{NET}.51/24")
    join_tap(ns[1], f"vde://{sw}[blue]", _name("pg"), f"{NET}.52/24")
    join_tap(ns[2], f"vde://{sw}", _name("pg"), f"{NET}.53/24")
    ping(ns[0], f"{NET}.52")
    assert not ping(ns[2], f"{NET}.51", count=2, check=False)


def test_unixcmd_sees_the_same_console_as_vde_switch(tmp_path: Path,
                                                     procs: list[subprocess.Popen[bytes]]
                                                     ) -> None:
    """Debian's ``unixcmd`` (vdecmd's parse machine) gets the same answers from both switches."""
    require_tools("vde_switch", "unixcmd")
    if not os.path.exists("/etc/vde2/vdecmd"):
        missing("/etc/vde2/vdecmd (vde2's unixcmd script) is not installed")
    ours, theirs = str(tmp_path / "ioth.m"), str(tmp_path / "vde.m")
    start_ioth_switch(procs, str(tmp_path / "ioth"), "--mgmt", ours)
    start_vde_switch(procs, str(tmp_path / "vde"), "-M", theirs)
    wait_for(lambda: os.path.exists(theirs), 10, what="vde_switch management socket")
    commands = ["port/showinfo", "vlan/create 7", "vlan/create 7", "vlan/print",
                "vlan/print 99", "hash/print", "port/print", "port/setvlan 3 7", "nonsense"]
    for command in commands:
        got = [subprocess.run(["unixcmd", "-s", sock, "-f", "/etc/vde2/vdecmd",
                               *command.split()], capture_output=True, text=True, timeout=20)
               for sock in (ours, theirs)]
        assert (got[0].stdout, got[0].returncode) == (got[1].stdout, got[1].returncode), command


def test_tap_port_inside_the_switch_process(tmp_path: Path,
                                            procs: list[subprocess.Popen[bytes]],
                                            make_netns: Callable[[], Netns]) -> None:
    """``ioth switch --port tap://T[netns=NS/up]``: a kernel TAP served by the switch itself."""
    require_root()
    require_tools("vde_plug", "ping")
    sw = str(tmp_path / "sw")
    ns1, ns2 = make_netns(), make_netns()
    t1 = _name("tp")
    start_ioth_switch(procs, sw, "--port", f"tap://{t1}[netns={ns1.name}/up]")
    wait_for_link(ns1, t1)
    ns1.run(["ip", "addr", "add", f"{NET}.61/24", "dev", t1])
    join_tap(ns2, f"vde://{sw}", _name("tp"), f"{NET}.62/24")
    ping(ns2, f"{NET}.61")
    ping(ns1, f"{NET}.62", size=1472)
