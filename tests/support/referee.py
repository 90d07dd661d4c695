"""A device under test (DUT) and a kernel peer, with the Linux kernel as the referee.

The Linux-parity tests (tests/review_s5/test_review_oracle*.py,
tests/stack/tcp/test_s5_parity_*.py) run each scenario twice: with the DUT's sockets made by
an ioth stack on a TAP whose other side is a kernel namespace (:func:`tests.support.peers.
kernel_lan`: 192.0.2.2 and 2001:db8::2 the stack, .1 and ::1 the kernel peer), and with the
DUT's sockets made by the kernel of a second namespace joined to the peer's by a veth pair
(the same addresses).  What the application sees must be the same.

A scenario that must wait for one end's TCP to reach a state (the peer's FIN made the DUT's
connection TIME-WAIT, a reset removed it) asks :meth:`Side.states` in a poll
(:meth:`Side.wait_states`) instead of sleeping a fixed time: ioth's tables, or the kernel
namespace's /proc/net/tcp{,6}; for a kernel socket, TCP_INFO and its queues (the peer is
always one).
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import termios
from collections.abc import Callable, Iterator
from typing import Any

from tests.net.nsutil import inside
from tests.support.peers import kernel_lan, netns, require_root, require_tools, wait_for

PEER_IP, DUT_IP = "192.0.2.1", "192.0.2.2"
PEER_IP6, DUT_IP6 = "2001:db8::1", "2001:db8::2"

#: /proc/net/tcp's state numbers (include/net/tcp_states.h), spelled as ioth's State values
KERNEL_STATES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "FIN-WAIT-1",
                 5: "FIN-WAIT-2", 6: "TIME-WAIT", 7: "CLOSED", 8: "CLOSE-WAIT", 9: "LAST-ACK",
                 10: "LISTEN", 11: "CLOSING", 12: "SYN-RECEIVED"}

Factory = Callable[..., Any]
"""(family=AF_INET) -> a TCP socket."""


def kernel_factory(ns_name: str) -> Factory:
    """TCP sockets of the kernel of namespace ``ns_name``."""
    def make(family: int = socket.AF_INET) -> socket.socket:
        with inside(ns_name):
            return socket.socket(family, socket.SOCK_STREAM)
    return make


class Side:
    """One end, the peer or the device under test: calling it makes a TCP socket
    (``family``, AF_INET by default); :meth:`states` tells what its TCP holds for a port."""

    def __init__(self, make: Factory, *, stack: Any = None, ns_name: str | None = None
                 ) -> None:
        self._make = make
        self.stack = stack
        """The ioth stack (None: the kernel of namespace :attr:`ns_name`)."""
        self.ns_name = ns_name

    def __call__(self, family: int = socket.AF_INET) -> Any:
        return self._make(family)

    def states(self, lport: int, rport: int | None = None) -> list[str]:
        """The states (RFC 793 spelling, "TIME-WAIT"...) of this end's TCP connections on
        local port ``lport`` (to remote port ``rport`` when given), listeners left out;
        a connection that a reset or the end of TIME-WAIT removed is not there."""
        if self.stack is not None:
            tcp = self.stack.core.tcp
            with self.stack.lock:
                out = [c.state.value for k, c in tcp.connections.items()
                       if k[1] == lport and (rport is None or k[3] == rport)
                       and c.state.value not in ("CLOSED", "LISTEN")]
                out += ["TIME-WAIT" for k in tcp.time_wait
                        if k[1] == lport and (rport is None or k[3] == rport)]
            return out
        assert self.ns_name is not None
        out = []
        with inside(self.ns_name):
            for name in ("tcp", "tcp6"):
                with open(f"/proc/thread-self/net/{name}") as f:
                    lines = f.read().splitlines()[1:]
                for line in lines:
                    fields = line.split()
                    local, remote, st = fields[1], fields[2], int(fields[3], 16)
                    state = KERNEL_STATES.get(st, str(st))
                    if int(local.rsplit(":", 1)[1], 16) != lport or state in ("CLOSED",
                                                                            "LISTEN"):
                        continue
                    if rport is None or int(remote.rsplit(":", 1)[1], 16) == rport:
                        out.append(state)
        return out

    def retransmissions(self, sock: Any) -> int:
        """Segments (the SYN included) this end's connected socket ``sock`` sent again: the
        kernel's TCP_INFO, or the ioth connection's count."""
        if self.stack is None:
            return kernel_retransmits(sock)
        lport, rport = sock.getsockname()[1], sock.getpeername()[1]
        with self.stack.lock:
            conns = [c for k, c in self.stack.core.tcp.connections.items()
                     if k[1] == lport and k[3] == rport]
        assert len(conns) == 1, conns
        return int(conns[0].retransmissions)

    def wait_states(self, ok: Callable[[list[str]], bool], lport: int,
                    rport: int | None = None, what: str = "a state",
                    timeout: float = 10.0) -> None:
        """Poll :meth:`states` until ``ok`` accepts them (fail after ``timeout`` s)."""
        wait_for(lambda: ok(self.states(lport, rport)), timeout, 0.01,
                 f"{what} (local port {lport}, remote port {rport})")

    def wait_time_wait(self, lport: int, rport: int | None = None) -> None:
        """Wait until this end holds a TIME-WAIT on ``lport`` (to ``rport``)."""
        self.wait_states(lambda s: "TIME-WAIT" in s, lport, rport, "TIME-WAIT")

    def wait_gone(self, lport: int, rport: int) -> None:
        """Wait until this end holds no connection ``lport`` <-> ``rport`` (reset, closed)."""
        self.wait_states(lambda s: not s, lport, rport, "the connection gone")


@contextlib.contextmanager
def sides(kind: str, prefix: str, *, v6: bool = False) -> Iterator[tuple[Side, Side]]:
    """``(peer, dut)`` for ``kind`` "ioth" (an ioth stack on a TAP) or "kernel" (a second
    namespace's kernel, joined by a veth; IPv6 addresses too with ``v6``); ``prefix`` names
    the namespaces."""
    require_root()
    require_tools("ip")
    if kind == "ioth":
        with kernel_lan(prefix) as (ns, stack, _tap):
            assert stack.core.tcp is not None
            yield Side(kernel_factory(ns.name), ns_name=ns.name), Side(
                lambda family=socket.AF_INET: _ioth_socket(stack, family), stack=stack)
    else:
        with netns(prefix + "k") as peer, netns(prefix + "d") as dut:
            six_p = f"ip addr add {PEER_IP6}/64 dev va nodad && " if v6 else ""
            six_d = f"ip addr add {DUT_IP6}/64 dev vb nodad && " if v6 else ""
            peer.sh(f"ip link add va type veth peer name vb netns {dut.name} && "
                    f"ip addr add {PEER_IP}/24 dev va && {six_p}ip link set va up")
            dut.sh(f"ip addr add {DUT_IP}/24 dev vb && {six_d}ip link set vb up")
            yield (Side(kernel_factory(peer.name), ns_name=peer.name),
                   Side(kernel_factory(dut.name), ns_name=dut.name))


def _ioth_socket(stack: Any, family: int) -> Any:
    from ioth.sockets import socket as isocket

    return isocket(stack, family, socket.SOCK_STREAM)


def kernel_retransmits(sock: socket.socket) -> int:
    """Segments kernel socket ``sock`` retransmitted, its SYN included (tcpi_total_retrans)."""
    return int.from_bytes(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[100:104],
                          "little")


def kernel_tcp_state(sock: socket.socket) -> str:
    """The state of a kernel TCP socket (TCP_INFO's tcpi_state, RFC 793 spelling)."""
    st = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    return KERNEL_STATES.get(st, str(st))


def wait_kernel_state(sock: socket.socket, state: str, timeout: float = 10.0) -> None:
    """Wait until kernel socket ``sock`` is in ``state`` ("CLOSED": a reset came)."""
    wait_for(lambda: kernel_tcp_state(sock) == state, timeout, 0.01,
             f"the kernel socket in {state}")


def wait_all_acked(sock: socket.socket, timeout: float = 10.0) -> None:
    """Wait until the other end acknowledged every byte kernel socket ``sock`` sent (SIOCOUTQ
    0: they are in its receive queue)."""
    wait_for(lambda: fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4) == b"\0" * 4, timeout,
             0.01, "the other end's ACK of everything sent")


def wait_received(sock: socket.socket, n: int, timeout: float = 10.0) -> None:
    """Wait until kernel socket ``sock`` holds ``n`` bytes or more unread (FIONREAD)."""
    wait_for(lambda: int.from_bytes(fcntl.ioctl(sock, termios.FIONREAD, b"\0" * 4),
                                    "little") >= n, timeout, 0.01, f"{n} bytes received")
