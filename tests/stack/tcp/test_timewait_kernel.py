"""Compact TIME-WAIT against the Linux kernel (real peer, TUN device in a test namespace): a
kernel client that reconnects from the same source port to an ioth server whose side of the
previous connection is in TIME-WAIT gets the new connection (the SYN reuses the 4-tuple: its
timestamp is newer, RFC 6191)."""

from __future__ import annotations

import sys

import pytest

from ioth.stack.tcp import layer as layer_mod
from ioth.stack.tcp.connection import TcpConnection
from ioth.stack.tcp.policy import TcpPolicy
from tests.stack.tcp.test_kernel_interop import TunShim, tun_ns  # noqa: F401 (fixture)
from tests.support.peers import Netns, stop_process

pytestmark = pytest.mark.interop

RECONNECT = """
import socket, sys, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
out = []
for i in range(3):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('', int(sys.argv[2])))
    s.settimeout(10)
    s.connect((sys.argv[1], 5004))
    s.sendall(b'hello%d' % i)
    data = b''
    while True:
        d = s.recv(100)
        if not d:
            break
        data += d
    s.close()
    out.append(data.decode())
    time.sleep(0.3)
print(' '.join(out), flush=True)
"""


@pytest.mark.parametrize("v6", [False, True])
def test_kernel_client_reconnects_into_time_wait(tun_ns: tuple[Netns, int],  # noqa: F811
                                                 v6: bool) -> None:
    assert layer_mod.COMPACT_TIME_WAIT
    ns, fd = tun_ns
    shim = TunShim(fd, TcpPolicy(time_wait=30.0))
    layer = shim.layer
    listener = layer.listen(5004)
    port = 40123
    proc = ns.popen([sys.executable, "-c", RECONNECT, "fd00:5::2" if v6 else "198.18.5.2",
                     str(port)], stdout=-1)
    served: list[TcpConnection] = []
    done: set[int] = set()

    def app(now: float) -> None:
        while (conn := listener.accept()) is not None:
            served.append(conn)
        for i, conn in enumerate(served):
            if i in done:
                continue
            try:
                got = conn.recv(100)
            except BlockingIOError:
                continue
            conn.send(b"re:" + got)
            conn.close()  # the server closes first: its side goes to TIME-WAIT
            layer.flush(conn, now)
            done.add(i)

    try:
        shim.run_until(lambda: proc.poll() is not None, app, timeout=30)
        out = proc.communicate(timeout=10)[0].decode().split()
    finally:
        stop_process(proc)
    assert out == ["re:hello0", "re:hello1", "re:hello2"]
    assert len(served) == 3 and len({c.remote for c in served}) == 1
    assert served[0].remote[1] == port
    # the 2nd and 3rd SYNs each found the previous connection in compact TIME-WAIT
    assert layer.tw_reused == 2 and layer.tw_compacted == 3
    assert len(layer.time_wait) == 1 and not layer.connections
