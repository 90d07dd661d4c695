"""IPv6 dual-stack UDP of ioth sockets against the Linux kernel.

* The same sequences of binds (AF_INET / AF_INET6, wildcard / specific / IPv4-mapped addresses,
  IPV6_V6ONLY on or off) and the same dual-stack send/connect/option calls run on kernel sockets
  in a fresh namespace and on ioth sockets (a loopback-only stack): the errnos must be equal.
* A kernel IPv4 UDP client (python, then socat) in a namespace talks to an ioth dual-stack server
  (AF_INET6 bound to ::) through a TAP: the server sees ::ffff:192.0.2.1 and its replies arrive.
"""

from __future__ import annotations

import ast
import contextlib
import io
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import ioth
import ioth.sockets
from tests.sockets.helpers import lone
from tests.sockets.test_udp_dualstack import CONFLICTS
from tests.support.peers import Netns, kernel_lan, netns, require_root, require_tools, stop_process

pytestmark = pytest.mark.interop

# Runs as is in the namespace (kernel sockets) and here under ioth.use(stack) (ioth sockets).
PROBE = """
import errno, socket
def e(f):
    try:
        f()
        return 0
    except OSError as x:
        return x.errno
def s6(only=0):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    keep.append(s)
    if only:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return s
keep = []
out = []
for first, second, _ in CONFLICTS:
    pair = []
    for fam, host, only in (first, second):
        s = s6(only) if fam == 6 else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        keep.append(s)
        pair.append(e(lambda: s.bind((host, 7171))))
    for s in keep:
        s.close()
    keep.clear()
    out.append(pair)
calls = [
    lambda: s6().getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) and 1 / 0,
    lambda: s6(1).sendto(b"x", ("::ffff:127.0.0.1", 9)),
    lambda: s6(1).connect(("::ffff:127.0.0.1", 9)),
    lambda: s6(1).bind(("::ffff:127.0.0.1", 0)),
    lambda: (lambda s: (s.bind(("::1", 0)), s.sendto(b"x", ("::ffff:127.0.0.1", 9))))(s6()),
    lambda: (lambda s: (s.bind(("::ffff:127.0.0.1", 0)), s.sendto(b"x", ("::1", 9))))(s6()),
    lambda: (lambda s: (s.bind(("::ffff:127.0.0.1", 0)), s.connect(("::1", 9))))(s6()),
    lambda: s6().bind(("::ffff:198.51.100.7", 0)),
    lambda: (lambda s: (s.bind(("::", 0)),
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)))(s6()),
    lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).setsockopt(
        socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1),
    lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).getsockopt(
        socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
    lambda: s6().sendto(b"x", ("::ffff:127.0.0.1", 9)),
]
out.append([e(c) for c in calls])
for s in keep:
    s.close()
print(repr(out))
"""


def _probe_code() -> str:
    return f"CONFLICTS = {CONFLICTS!r}\n{PROBE}"


def test_dualstack_errnos_match_the_kernel() -> None:
    require_root()
    require_tools("ip")
    code = _probe_code()
    with netns("iud") as ns:
        kernel_out = ns.run([sys.executable, "-c", code]).stdout
    kernel = ast.literal_eval(kernel_out)
    with lone() as stack, ioth.use(stack):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(code, {})  # the probe above, now on ioth sockets
        ours = ast.literal_eval(buf.getvalue())
    # the expectations in the unit test are the kernel's
    assert [tuple(x) for x in kernel[:-1]] == [c[2] for c in CONFLICTS]
    assert ours == kernel
    assert kernel[-1][:4] == [0, 101, 101, 22]  # default 0; ENETUNREACH x2; EINVAL


@pytest.fixture
def lan() -> Iterator[tuple[Netns, ioth.Stack]]:
    """Kernel 192.0.2.1 / 2001:db8::1 in a namespace, ioth 192.0.2.2 / 2001:db8::2 on its TAP."""
    require_tools("socat")
    with kernel_lan("iuk") as (ns, stack, _tap):
        yield ns, stack


def test_kernel_ipv4_clients_and_ioth_dualstack_server(lan: tuple[Netns, ioth.Stack]) -> None:
    ns, stack = lan
    srv = ioth.sockets.socket(stack, socket.AF_INET6, socket.SOCK_DGRAM)
    srv.bind(("::", 5300))
    srv.settimeout(10)
    seen: list[tuple[bytes, tuple[object, ...]]] = []

    def echo(n: int) -> None:
        for _ in range(n):
            try:
                data, src = srv.recvfrom(2000)
            except OSError:
                return
            seen.append((data, src))
            srv.sendto(data.upper(), src)

    t = threading.Thread(target=echo, args=(3,), daemon=True)
    t.start()
    try:
        client = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_{fam}, socket.SOCK_DGRAM); s.settimeout(2)\n"
            "s.bind(('{me}', {port}))\n"
            "for _ in range(10):\n"
            "    s.sendto(b'{word}', ('{to}', 5300))\n"
            "    try:\n"
            "        d, a = s.recvfrom(100); break\n"
            "    except TimeoutError: pass\n"
            "print(d.decode(), a[0], a[1])\n")
        out4 = ns.run([sys.executable, "-c", client.format(
            fam="INET", me="192.0.2.1", port=40001, word="hello", to="192.0.2.2")]).stdout
        assert out4.split() == ["HELLO", "192.0.2.2", "5300"]
        out6 = ns.run([sys.executable, "-c", client.format(
            fam="INET6", me="2001:db8::1", port=40002, word="six", to="2001:db8::2")]).stdout
        assert out6.split() == ["SIX", "2001:db8::2", "5300"]
        proc = ns.popen(["socat", "-T", "5", "-", "UDP4:192.0.2.2:5300,bind=192.0.2.1:40003"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"socat\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"SOCAT\n"
        finally:
            stop_process(proc)
        t.join(10)
    finally:
        srv.close()
    assert [(d, s[:2]) for d, s in seen] == [
        (b"hello", ("::ffff:192.0.2.1", 40001)),
        (b"six", ("2001:db8::1", 40002)),
        (b"socat\n", ("::ffff:192.0.2.1", 40003)),
    ]
