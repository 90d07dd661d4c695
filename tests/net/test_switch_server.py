"""The switch server: VDE protocol, ports, plugs, console and CLI (no kernel networking)."""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioth.net.plug import Plug
from ioth.net.registry import open_plug
from ioth.net.switch.console import CommandSet
from ioth.net.switch.core import MAX_FRAME
from ioth.net.switch.server import HubPlug, SwitchPlug, SwitchServer, mtu_from_description
from tests.support.peers import ioth_cmd, stop_process, wait_for

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")
C = bytes.fromhex("020000000003")
BCAST = b"\xff" * 6


def eth(dst: bytes, src: bytes, size: int = 60) -> bytes:
    return dst + src + b"\x08\x00" + b"z" * (size - 14)


def tagged_frame(frame: bytes, vid: int) -> bytes:
    return frame[:12] + b"\x81\x00" + vid.to_bytes(2, "big") + frame[12:]


class RawClient:
    """A VDE client written from the protocol description, independent of ioth's plug."""

    seq = 0

    def __init__(self, directory: str, port: int = 0, description: bytes = b"test: pid=1",
                 magic: int = 0xFEEDFACE, ctl_name: str = "ctl") -> None:
        RawClient.seq += 1
        self.data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.path = f"{directory}/.{os.getpid():05d}-{RawClient.seq:05d}"
        self.data.bind(self.path)
        self.data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.connect(os.path.join(directory, ctl_name))
        self.ctl.settimeout(5)
        sun = struct.pack("<H108s", socket.AF_UNIX, self.path.encode())
        self.ctl.sendall(struct.pack("<III", magic, 3, port << 8) + sun + description)
        reply = b""
        while len(reply) < 110:
            chunk = self.ctl.recv(110 - len(reply))
            if not chunk:
                break
            reply += chunk
        self.reply = reply
        os.unlink(self.path)
        if len(reply) == 110:
            self.switch_path = reply[2:].rstrip(b"\0").decode()
            self.data.connect(self.switch_path)
        self.data.settimeout(2)

    def send(self, frame: bytes) -> None:
        self.data.send(frame)

    def recv(self, timeout: float = 2.0) -> bytes:
        self.data.settimeout(timeout)
        return self.data.recv(70000)

    def nothing(self, wait: float = 0.2) -> bool:
        self.data.settimeout(wait)
        try:
            self.data.recv(70000)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.ctl.close()
        self.data.close()


@pytest.fixture
def swdir(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "sw")


@pytest.fixture
def server(swdir: str) -> Iterator[SwitchServer]:
    srv = SwitchServer(swdir).start()
    try:
        yield srv
    finally:
        srv.close()


def test_mtu_from_description() -> None:
    assert mtu_from_description(b"ioth: user=u pid=1 mtu=9000") == 9000
    assert mtu_from_description(b"vdeplug: user=u pid=1") == 1500
    assert mtu_from_description(b"x mtu=99999999") == 65535
    assert mtu_from_description(b"x mtu=1") == 68
    assert mtu_from_description(b"xmtu=9000", 1500) == 1500


def test_directory_and_socket_modes(server: SwitchServer, swdir: str) -> None:
    assert stat.S_IMODE(os.stat(swdir).st_mode) == 0o2700
    assert stat.S_ISSOCK(os.stat(swdir + "/ctl").st_mode)
    assert stat.S_IMODE(os.stat(swdir + "/ctl").st_mode) == 0o600
    c = RawClient(swdir)
    name = os.path.basename(c.switch_path)
    assert name.startswith("001.")
    assert stat.S_IMODE(os.stat(c.switch_path).st_mode) == 0o600
    assert len(c.reply) == 110
    assert struct.unpack_from("<H", c.reply)[0] == socket.AF_UNIX
    c.close()


def test_frames_cross_and_learning(server: SwitchServer, swdir: str) -> None:
    a, b, c = RawClient(swdir), RawClient(swdir), RawClient(swdir)
    a.send(eth(BCAST, A))
    assert b.recv() == eth(BCAST, A)
    assert c.recv() == eth(BCAST, A)
    b.send(eth(A, B))
    assert a.recv() == eth(A, B)
    assert c.nothing()  # learnt: unicast only
    assert a.nothing()  # never back to the sender
    assert server.active_ports() == [1, 2, 3]
    for x in (a, b, c):
        x.close()


def test_specific_port_and_shared_port(server: SwitchServer, swdir: str) -> None:
    a = RawClient(swdir, port=7)
    b = RawClient(swdir, port=7)
    c = RawClient(swdir)
    assert os.path.basename(a.switch_path).startswith("007.")
    assert os.path.basename(c.switch_path).startswith("001.")
    assert len(server.endpoints(7)) == 2
    c.send(eth(BCAST, C))
    assert a.recv() == eth(BCAST, C)
    assert b.recv() == eth(BCAST, C)
    # two endpoints of one port do not talk to each other through the switch
    a.send(eth(BCAST, A))
    assert b.nothing()
    assert c.recv() == eth(BCAST, A)
    for x in (a, b, c):
        x.close()


def test_ctl_eof_releases_the_port(server: SwitchServer, swdir: str) -> None:
    a = RawClient(swdir)
    path = a.switch_path
    a.close()
    wait_for(lambda: server.active_ports() == [], 5, what="port release")
    assert not os.path.exists(path)
    b = RawClient(swdir)
    assert os.path.basename(b.switch_path).startswith("001.")  # the port is free again
    b.close()


def test_bad_requests_are_refused(server: SwitchServer, swdir: str) -> None:
    bad = RawClient(swdir, magic=0x12345678)
    assert bad.reply == b""
    bad.close()
    out_of_range = RawClient(swdir, port=99)
    assert out_of_range.reply == b""
    out_of_range.close()
    junk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    junk.connect(swdir + "/ctl")
    junk.sendall(b"\x00" * 5)
    junk.close()
    wait_for(lambda: server.rejected >= 2, 5, what="rejections")
    good = RawClient(swdir)
    assert len(good.reply) == 110
    good.close()


def test_jumbo_frames_only_to_ports_that_announce_them(server: SwitchServer, swdir: str) -> None:
    big1 = RawClient(swdir, description=b"ioth: user=t pid=1 mtu=65535")
    big2 = RawClient(swdir, description=b"ioth: user=t pid=2 mtu=65535")
    jumbo = RawClient(swdir, description=b"ioth: user=t pid=3 mtu=9000")
    classic = RawClient(swdir)
    for size in (1518, 9000, 9018, 65000, MAX_FRAME):
        frame = eth(BCAST, A, size)
        big1.send(frame)
        assert big2.recv() == frame
        if size <= 9018:
            assert jumbo.recv() == frame
        if size <= 1518:
            assert classic.recv() == frame
    assert jumbo.nothing()
    assert classic.nothing()
    big1.data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    big1.send(eth(BCAST, A, MAX_FRAME + 1))  # over the switch's limit: dropped on arrival
    assert big2.nothing()
    wait_for(lambda: server.recv_errors == 1, 5, what="oversize datagram counted")
    port = server.core.ports[4]
    assert port.max_frame == 1518
    assert port.counters.drop_too_big == 4
    for x in (big1, big2, jumbo, classic):
        x.close()


def test_slow_port_never_stalls_the_others(server: SwitchServer, swdir: str) -> None:
    sender = RawClient(swdir, description=b"ioth: mtu=9000")
    sleeper = RawClient(swdir, description=b"ioth: mtu=9000")  # never reads
    reader = RawClient(swdir, description=b"ioth: mtu=9000")
    reader.data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    got = 0
    for i in range(3000):
        sender.send(eth(BCAST, A, 9000))
        if i % 5 == 4:
            reader.data.setblocking(False)
            try:
                while True:
                    reader.data.recv(70000)
                    got += 1
            except BlockingIOError:
                pass
    reader.data.settimeout(0.5)
    try:
        while True:
            reader.data.recv(70000)
            got += 1
    except TimeoutError:
        pass
    assert server.core.ports[2].counters.drop_send > 0
    assert got > 1000  # the reader kept receiving while the sleeper was full
    for x in (sender, sleeper, reader):
        x.close()


def test_quiet_port_switches_to_draining_and_loses_nothing(server: SwitchServer,
                                                          swdir: str) -> None:
    """A port that had one frame per wake-up (quiet: no EAGAIN probe) still delivers a
    sudden burst completely and in order, and goes back to draining."""
    a, b = RawClient(swdir), RawClient(swdir)
    b.data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    a.send(eth(BCAST, A))
    assert b.recv() == eth(BCAST, A)
    b.send(eth(BCAST, B))
    assert a.recv() == eth(BCAST, B)
    for i in range(20):  # one frame at a time: the port goes quiet
        a.send(eth(B, A, 60 + i))
        assert b.recv() == eth(B, A, 60 + i)
    (ep,) = server._endpoints[1]
    assert not ep.drain
    burst = [eth(B, A, 60 + i % 1400) for i in range(500)]
    for frame in burst:
        a.send(frame)
    got = [b.recv() for _ in burst]
    assert got == burst
    assert b.nothing()
    assert server.core.ports[1].counters.rx_frames == 521
    for x in (a, b):
        x.close()


def test_vde_plug_reads_a_queue_in_one_call(server: SwitchServer, swdir: str) -> None:
    """recv_frames reads what is queued in one call (FIONREAD says whether more is left)."""
    raw = RawClient(swdir)
    plug = open_plug(f"vde://{swdir}")
    try:
        raw.send(eth(BCAST, A))
        wait_for(lambda: _got(plug, eth(BCAST, A)), 5, what="first frame")
        for i in range(5):
            raw.send(eth(BCAST, A, 100 + i))
        wait_for(lambda: server.core.ports[1].counters.rx_frames == 6, 5, what="switched")
        time.sleep(0.05)
        assert plug.recv_frames(64) == [eth(BCAST, A, 100 + i) for i in range(5)]
        assert plug.recv_frames(64) == []
    finally:
        plug.close()
        raw.close()


def test_ioth_vde_plug_joins_with_big_mtu(server: SwitchServer, swdir: str) -> None:
    p1 = open_plug(f"vde://{swdir}[mtu=65535]")
    p2 = open_plug(f"vde://{swdir}[mtu=65535]")
    try:
        frame = eth(BCAST, A, 65000)
        assert p1.send(frame)
        wait_for(lambda: _got(p2, frame), 5, what="65000-byte frame")
    finally:
        p1.close()
        p2.close()


_received: dict[int, list[bytes]] = {}


def _got(plug: Plug, frame: bytes) -> bool:
    bucket = _received.setdefault(id(plug), [])
    bucket.extend(plug.recv_frames())
    return frame in bucket


def test_plug_port_chains_two_switches(tmp_path: Path) -> None:
    d1, d2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    with SwitchServer(d1).start() as s1, SwitchServer(d2).start():
        s1.add_plug(open_plug(f"vde://{d2}[mtu=9000]"))
        a = RawClient(d1, description=b"ioth: mtu=9000")
        b = RawClient(d2, description=b"ioth: mtu=9000")
        a.send(eth(BCAST, A, 9000))
        assert b.recv() == eth(BCAST, A, 9000)
        b.send(eth(A, B))
        assert a.recv() == eth(A, B)
        a.close()
        b.close()


def test_switch_plug_and_hub_plug(tmp_path: Path) -> None:
    d = str(tmp_path / "node")
    plug = open_plug(f"switch://{d}[numports=8/expiretime=30/mtu=9000]")
    assert isinstance(plug, SwitchPlug)
    try:
        assert plug.server.core.ageing == 30
        assert plug.server.numports == 8
        client = RawClient(d, description=b"ioth: mtu=9000")
        client.send(eth(BCAST, A, 9000))
        wait_for(lambda: _got(plug, eth(BCAST, A, 9000)), 5, what="frame at switch:// plug")
        assert plug.send(eth(A, B))
        assert client.recv() == eth(A, B)
        client.close()
    finally:
        plug.close()
    assert not os.path.exists(d)
    hub = open_plug(f"hub://{d}")
    assert isinstance(hub, HubPlug)
    try:
        assert hub.server.core.hub
        x, y = RawClient(d), RawClient(d)
        x.send(eth(BCAST, A))
        assert y.recv() == eth(BCAST, A)
        y.send(eth(A, B))
        # a hub does not learn: y's unicast to A reaches x and the plug
        assert x.recv() == eth(A, B)
        wait_for(lambda: _got(hub, eth(A, B)), 5, what="frame at hub:// plug")
        x.close()
        y.close()
    finally:
        hub.close()


def test_switch_plug_rejects_bad_options(tmp_path: Path) -> None:
    from ioth.errors import VNLError
    for vnl in (f"switch://{tmp_path}/x[numports=1]", f"switch://{tmp_path}/x[mtu=10]",
                f"switch://{tmp_path}/x[bogus=1]", f"switch://{tmp_path}/x[mode=9z]"):
        with pytest.raises(VNLError):
            open_plug(vnl)


def test_live_switch_directory_is_refused_and_stale_one_reused(swdir: str) -> None:
    with SwitchServer(swdir).start():
        with pytest.raises(OSError) as info:
            SwitchServer(swdir)
        assert info.value.errno == errno.EADDRINUSE
    # a stale ctl socket left behind (nobody listening) is replaced
    os.makedirs(swdir, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(swdir + "/ctl")
    stale.close()
    with SwitchServer(swdir).start():
        c = RawClient(swdir)
        assert len(c.reply) == 110
        c.close()


def test_port_group_gets_its_vlan(server: SwitchServer, swdir: str) -> None:
    server.add_port_group("green", vlan=10)
    g1 = RawClient(swdir, ctl_name="green")
    g2 = RawClient(swdir, ctl_name="green")
    plain = RawClient(swdir)
    trunk_port = server.core.ports[3]
    assert trunk_port.trunk
    g1.send(eth(BCAST, A))
    assert g2.recv() == eth(BCAST, A)
    tagged = plain.recv()
    assert tagged[12:16] == b"\x81\x00\x00\x0a"
    plain.send(eth(BCAST, B))  # VLAN 0: does not reach the group
    assert g1.nothing()
    assert g2.nothing()
    for x in (g1, g2, plain):
        x.close()


# -- console ----------------------------------------------------------------------------------
def test_console_commands(server: SwitchServer, swdir: str) -> None:
    cmds = CommandSet(server)
    a = RawClient(swdir, description=b"vdeplug: user=alice pid=7")
    a.send(eth(BCAST, A))
    wait_for(lambda: server.core.ports[1].counters.rx_frames == 1, 5, what="frame counted")
    text, rv = cmds.execute("port/print")
    assert rv == 0
    assert text.startswith("0000 DATA END WITH '.'\nPort 0001 untagged_vlan=0000 ACTIVE")
    assert " IN:  pkts          1          bytes                   60\n" in text
    assert "Current User: alice" in text
    assert text.endswith("\n.\n1000 Success\n")
    text, _ = cmds.execute("hash/print")
    assert "Hash: 0000 Addr: 02:00:00:00:00:01 VLAN 0000 to port: 001  age " in text
    assert cmds.execute("vlan/create 5") == ("1000 Success\n", 0)
    assert cmds.execute("vlan/create 5") == ("1017 File exists\n", errno.EEXIST)
    assert cmds.execute("vlan/addport 5 1")[1] == 0
    text, _ = cmds.execute("vlan/print 5")
    assert " -- Port 0001 tagged=1 active=1 status=Forwarding" in text
    assert cmds.execute("port/setvlan 1 5")[1] == 0
    assert server.core.ports[1].untagged_vlan == 5
    assert cmds.execute("port/setvlan 40 5") == ("1022 Invalid argument\n", errno.EINVAL)
    assert cmds.execute("port/setvlan 9 5") == ("1006 No such device or address\n", errno.ENXIO)
    assert cmds.execute("port/print 9") == (
        "0000 DATA END WITH '.'\n.\n1006 No such device or address\n", errno.ENXIO)
    assert cmds.execute("bogus") == ("1038 Function not implemented\n", errno.ENOSYS)
    assert cmds.execute("vlan/create x")[1] == errno.EINVAL
    assert cmds.execute("vlan/create")[1] == errno.EINVAL
    assert cmds.execute("") == ("", 0)
    assert cmds.execute("# comment") == ("", 0)
    assert cmds.execute("hash/setexpire 50")[1] == 0
    assert server.core.ageing == 50
    text, _ = cmds.execute("hash/print")
    assert "Hash: 0000 Addr: 02:00:00:00:00:01 VLAN 0005 to port: 001" not in text  # flushed
    text, _ = cmds.execute("help vlan")
    assert "vlan/addport       N PORT          add port to the vlan N (tagged)" in text
    assert cmds.execute("vlan/delport 5 1")[1] == errno.EADDRINUSE  # untagged there now
    assert cmds.execute("logout")[1] < 0
    a.close()


COMMAND_PATHS = [c.path for c in CommandSet(cast(SwitchServer, object())).commands]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.text(max_size=40),
    st.builds(lambda c, a: f"{c} {a}", st.sampled_from(COMMAND_PATHS),
              st.text(alphabet="0123456789 -xabc:", max_size=12))), max_size=12))
def test_console_never_raises(server: SwitchServer, lines: list[str]) -> None:
    """Random and half-right command lines only ever get a status, never an exception."""
    cmds = CommandSet(server)
    for line in lines:
        text, rv = cmds.execute(line)
        assert isinstance(text, str)
        if rv > 0:
            assert text.endswith(f"{os.strerror(rv)}\n")


def test_created_port_is_configured_before_the_client_comes(server: SwitchServer,
                                                             swdir: str) -> None:
    cmds = CommandSet(server)
    for line in ("vlan/create 10", "port/create 5", "port/setvlan 5 10"):
        assert cmds.execute(line) == ("1000 Success\n", 0), line
    assert cmds.execute("port/create 5")[1] == errno.EEXIST
    assert "Port 0005" not in cmds.execute("port/print")[0]
    assert "Port 0005 untagged_vlan=0010 INACTIVE - Unnamed NOT Allocatable" in \
        cmds.execute("port/allprint")[0]
    others = [RawClient(swdir) for _ in range(5)]  # automatic allocation skips port 5
    assert sorted(server.active_ports()) == [1, 2, 3, 4, 6]
    for _ in range(2):  # the configuration survives the client
        client = RawClient(swdir, port=5)
        client.send(eth(BCAST, C))
        assert others[1].recv() == tagged_frame(eth(BCAST, C), 10)  # VLAN 10 tagged on trunks
        assert server.core.ports[5].untagged_vlan == 10
        assert "Port 0005 untagged_vlan=0010 ACTIVE" in cmds.execute("port/print 5")[0]
        assert cmds.execute("port/remove 5")[1] == errno.EADDRINUSE
        client.close()
        wait_for(lambda: not server.core.ports[5].active, 5, what="port 5 inactive")
    assert cmds.execute("port/remove 5") == ("1000 Success\n", 0)
    assert 5 not in server.core.ports
    assert cmds.execute("port/remove 5")[1] == errno.ENXIO
    for x in others:
        x.close()


def _talk(sock: socket.socket, line: bytes) -> str:
    sock.sendall(line)
    data = b""
    while not data.endswith(b"\nvde$ ") and not data.endswith(b"END OF SESSION"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_console_socket_session_and_shutdown(swdir: str, tmp_path: Path) -> None:
    mgmt = str(tmp_path / "mgmt")
    srv = SwitchServer(swdir, mgmt=mgmt).start()
    stopped: list[bool] = []
    srv.on_shutdown = lambda: stopped.append(True)
    try:
        assert stat.S_IMODE(os.stat(mgmt).st_mode) == 0o600
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(mgmt)
        s.settimeout(5)
        banner = _talk(s, b"")
        assert banner.endswith("\n\nvde$ ")
        assert _talk(s, b"showinfo\n").startswith("0000 DATA END WITH '.'\nioth switch V.")
        # several commands in one write are all answered, in order
        both = _talk(s, b"vlan/create 7\nvlan/print 7\n")
        assert both.startswith("1000 Success\n\nvde$ ")
        if "VLAN 0007" not in both:
            both += _talk(s, b"")
        assert "VLAN 0007" in both
        assert _talk(s, b"nonsense 1 2 3\n") == "1038 Function not implemented\n\nvde$ "
        assert _talk(s, b"shutdown\n") == "9999 END OF SESSION"
        wait_for(lambda: stopped == [True], 5, what="shutdown callback")
        s.close()
    finally:
        srv.close()
    assert not os.path.exists(mgmt)


# -- CLI --------------------------------------------------------------------------------------
def test_cli_starts_serves_and_cleans_up_on_sigterm(swdir: str, tmp_path: Path) -> None:
    mgmt = str(tmp_path / "m")
    pidfile = str(tmp_path / "pid")
    proc = subprocess.Popen(ioth_cmd("switch", swdir, "--mgmt", mgmt, "--pidfile", pidfile),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("ioth switch: switch on ")
        wait_for(lambda: os.path.exists(pidfile), 5, what="pidfile")
        a, b = RawClient(swdir), RawClient(swdir)
        a.send(eth(BCAST, A))
        assert b.recv() == eth(BCAST, A)
        a.close()
        b.close()
        proc.terminate()
        assert proc.wait(10) == 0
        assert not os.path.exists(swdir)
        assert not os.path.exists(mgmt)
        assert not os.path.exists(pidfile)
    finally:
        stop_process(proc)


@pytest.mark.parametrize("args", [["--numports", "x"], ["--mtu", "70000"], ["--mode", "9"],
                                  ["--port", "nosuch://x"], ["--expire", "0"]])
def test_cli_bad_arguments_exit_2_with_one_line(swdir: str, args: list[str]) -> None:
    proc = subprocess.run(ioth_cmd("switch", swdir, *args), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ioth switch: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(swdir + "/ctl")


def test_cli_daemon_mode(swdir: str, tmp_path: Path) -> None:
    pidfile = str(tmp_path / "pid")
    proc = subprocess.run(ioth_cmd("switch", swdir, "--daemon", "--pidfile", pidfile),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: os.path.exists(pidfile), 5, what="pidfile")
    pid = int(Path(pidfile).read_text())
    try:
        c = RawClient(swdir)
        assert len(c.reply) == 110
        c.close()
    finally:
        os.kill(pid, 15)
    wait_for(lambda: not os.path.exists(swdir), 10, what="daemon cleanup")
    time.sleep(0.1)


def test_cli_console_shutdown(swdir: str, tmp_path: Path) -> None:
    mgmt = str(tmp_path / "m")
    proc = subprocess.Popen(ioth_cmd("switch", swdir, "--mgmt", mgmt, "--hub"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().startswith("ioth switch: hub on ")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(mgmt)
        s.settimeout(5)
        _talk(s, b"")
        assert "HUB=true" in _talk(s, b"port/showinfo\n")
        assert _talk(s, b"shutdown\n") == "9999 END OF SESSION"
        s.close()
        assert proc.wait(10) == 0
        assert not os.path.exists(swdir)
        assert not os.path.exists(mgmt)
    finally:
        stop_process(proc)


def test_cli_rcfile(swdir: str, tmp_path: Path) -> None:
    rc = tmp_path / "switch.rc"
    rc.write_text("# VLAN 10 on port 5\nvlan/create 10\nport/create 5\nport/setvlan 5 10\n")
    mgmt = str(tmp_path / "m")
    proc = subprocess.Popen(ioth_cmd("switch", swdir, "--rcfile", str(rc), "--mgmt", mgmt),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().startswith("ioth switch: switch on ")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(mgmt)
        s.settimeout(5)
        _talk(s, b"")
        assert "Port 0005 untagged_vlan=0010 INACTIVE" in _talk(s, b"port/allprint\n")
        s.close()
    finally:
        stop_process(proc)
    rc.write_text("vlan/create 10\nport/setvlan 7 10\n")
    bad = subprocess.run(ioth_cmd("switch", swdir, "-f", str(rc)), capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (f"ioth switch: error: {rc}:2: 'port/setvlan 7 10': "
                                  "No such device or address")
    assert not os.path.exists(swdir)
