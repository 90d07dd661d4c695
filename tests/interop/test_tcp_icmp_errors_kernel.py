"""ICMP errors from a Linux router abort a TCP connection attempt with the errno Linux gives.

A kernel namespace routes for two clients: a kernel client namespace behind a veth and an ioth
stack on a TAP.  The router has ``unreachable`` and ``prohibit`` routes and no route at all for
a third prefix, so it answers their SYNs with ICMP host unreachable (code 1), packet filtered
(code 13) and net unreachable (code 0); for IPv6 with no route (code 0) and administratively
prohibited (code 1).  Each client connects to the same destinations; the errnos must match
(EHOSTUNREACH, EHOSTUNREACH, ENETUNREACH; ENETUNREACH, EACCES) and arrive at once, not after
the SYN retries.
"""

from __future__ import annotations

import errno
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

import ioth
import ioth.sockets
from tests.support.peers import Netns, netns, require_root, require_tools, stop_process

pytestmark = pytest.mark.interop

# unreachable route, prohibit route, no route (IPv4); unreachable, prohibit (IPv6)
TARGETS = ("198.51.100.9", "203.0.113.9", "198.18.200.9", "2001:db8:100::9", "2001:db8:200::9")
EXPECTED = [errno.EHOSTUNREACH, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETUNREACH,
            errno.EACCES]

CASES = (
    "import socket\n"
    "def e(host):\n"
    "    try: socket.create_connection((host, 80), timeout=10).close()\n"
    "    except OSError as x: return x.errno or -1\n"
    "    return 0\n"
    "print(*[e(h) for h in {targets!r}])\n"
)


@pytest.fixture
def routed() -> Iterator[tuple[Netns, ioth.Stack]]:
    """Router namespace: TAP 192.0.2.1 / 2001:db8::1 towards ioth (.2 / ::2); veth
    198.18.0.1 / 2001:db8:1::1 towards the kernel client namespace (.2 / ::2)."""
    require_root()
    require_tools("ip")
    with netns("iir") as router, netns("iic") as client:
        tap = "ie" + secrets.token_hex(4)
        rv = "ir" + secrets.token_hex(4)
        cv = "ic" + secrets.token_hex(4)
        stack = ioth.Stack(f"tap://{tap}[netns={router.name}/up]",
                           "eth,ip=192.0.2.2/24,gw=192.0.2.1,ip=2001:db8::2/64,"
                           "gw=2001:db8::1")
        try:
            router.sh(
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 "
                "net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0; "
                f"ip addr add 192.0.2.1/24 dev {tap}; "
                f"ip addr add 2001:db8::1/64 dev {tap} nodad; ip link set {tap} up; "
                f"ip link add {rv} type veth peer name {cv} netns {client.name}; "
                f"ip addr add 198.18.0.1/24 dev {rv}; "
                f"ip addr add 2001:db8:1::1/64 dev {rv} nodad; ip link set {rv} up; "
                "ip route add unreachable 198.51.100.0/24; "
                "ip route add prohibit 203.0.113.0/24; "
                "ip -6 route add unreachable 2001:db8:100::/48; "
                "ip -6 route add prohibit 2001:db8:200::/48")
            client.sh(
                f"ip addr add 198.18.0.2/24 dev {cv}; "
                f"ip addr add 2001:db8:1::2/64 dev {cv} nodad; ip link set {cv} up; "
                "ip link set lo up; ip route add default via 198.18.0.1; "
                "ip -6 route add default via 2001:db8:1::1")
            assert stack.wait_dad(5)
            yield client, stack
        finally:
            stack.close()


def test_icmp_errors_abort_syn_sent_with_the_kernels_errno(
        routed: tuple[Netns, ioth.Stack]) -> None:
    client, stack = routed
    proc = client.popen([sys.executable, "-c", CASES.format(targets=TARGETS)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ours: dict[str, list[int]] = {}
        with ioth.use(stack):
            ns_ = {"socket": socket, "print": lambda *a: ours.update(result=list(a))}
            exec(CASES.format(targets=TARGETS), ns_)
        out, err = proc.communicate(timeout=40)
    finally:
        stop_process(proc)
    kernel = [int(x) for x in out.split()]
    assert kernel == EXPECTED, err
    assert ours["result"] == kernel
