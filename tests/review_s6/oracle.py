"""Shared machinery of the session-6 API review: the review-s5 differential oracle, per scenario.

A scenario is a function of two socket factories (the peer, always a kernel socket in a test
namespace, and the device under test) returning what the application saw.  :func:`params`
makes two pytest parameters per scenario: ``kernel`` (the DUT is the Linux kernel of a second
namespace: the scenario must run through, its observations become the oracle) and ``ioth``
(the DUT is an ioth stack on a TAP: its observations must equal the kernel's).  A known
divergence is a strict xfail on the ``ioth`` parameter only, so a fix turns it into a failure
to be removed from the list.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

from tests.net.nsutil import inside
from tests.review_s5.test_review_oracle import _setup
from tests.sockets.helpers import _tcp_ready
from tests.support.peers import kernel_lan, netns, require_root, require_tools

Factory = Callable[..., Any]
Scenario = Callable[[Factory, Factory], list[Any]]
PEER6, DUT6 = "2001:db8::1", "2001:db8::2"
_ORACLE: dict[str, list[Any]] = {}

_POLL_NAMES = [(select.POLLIN, "IN"), (select.POLLPRI, "PRI"), (select.POLLOUT, "OUT"),
               (select.POLLERR, "ERR"), (select.POLLHUP, "HUP"), (select.POLLRDHUP, "RDHUP"),
               (select.POLLNVAL, "NVAL")]


def mask(s: Any, wait: float = 0.0) -> str:
    """The poll mask of ``s`` (after waiting up to ``wait`` s for any event), as names."""
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLPRI | select.POLLOUT | select.POLLRDHUP)
    got = p.poll(int(wait * 1000))
    ev = got[0][1] if got else 0
    return "|".join(n for bit, n in _POLL_NAMES if ev & bit) or "-"


def mask_when(s: Any, bit: int, wait: float = 2.0) -> str:
    """The poll mask of ``s`` once ``bit`` is set (or ``wait`` s passed): no race with the
    arrival of what the test waits for (a kernel peer's bytes cross a veth at once, a TAP
    and an ioth stack a little later)."""
    p = select.poll()
    p.register(s, bit)
    p.poll(int(wait * 1000))
    return mask(s)


def tryit(fn: Callable[[], Any]) -> Any:
    """The call's result, or the name of the errno (or exception type) it raised."""
    try:
        return fn()
    except OSError as exc:
        if exc.errno:
            return errno.errorcode.get(exc.errno, str(exc))
        return type(exc).__name__


def close_all(*socks: Any) -> None:
    """Close each socket, ignoring errors."""
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


def full_listener(make: Callable[[], Any], host: str) -> tuple[Any, list[Any]]:
    """A peer listener on ``host`` whose accept queue is full (listen(0) and two clients
    it never accepts): Linux drops further SYNs, so a third party's connect hears nothing.
    ``make`` is the peer's socket factory; returns (listener, the two clients)."""
    lst = make()
    lst.bind((host, 0))
    lst.listen(0)
    fill = []
    for _ in range(2):
        f = make()
        f.setblocking(False)
        f.connect_ex(lst.getsockname())
        fill.append(f)
        time.sleep(0.05)
    return lst, fill


class Peer:
    """The peer's socket factory (a kernel namespace), which can also make the peer fall
    silent: a blackhole qdisc dropping everything it sends towards the DUT."""

    def __init__(self, ns: Any, dev: str) -> None:
        self.ns = ns
        self.dev = dev

    def __call__(self, family: int = socket.AF_INET6) -> socket.socket:
        with inside(self.ns.name):
            return socket.socket(family, socket.SOCK_STREAM)

    def link_local(self, wait: float = 4.0) -> str:
        """The peer's IPv6 link-local address on the link (once its DAD is done)."""
        import time
        deadline = time.monotonic() + wait
        while True:
            text = self.ns.sh(f"ip -6 -o addr show dev {self.dev} scope link").stdout
            if "fe80" in text and "tentative" not in text:
                return text.split()[3].split("/")[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no link-local address on the peer: {text!r}")
            time.sleep(0.1)

    def silence(self, on: bool) -> None:
        """Drop (True) or stop dropping (False) every frame the peer sends to the DUT."""
        verb = "replace" if on else "del"
        self.ns.sh(f"tc qdisc {verb} dev {self.dev} root blackhole", check=on)


class Dut:
    """The DUT's socket factory (family argument, AF_INET6 by default) with
    :meth:`ambient`: a context in which the stdlib's own socket calls (create_connection,
    create_server, socketserver, http.client) make DUT sockets: ``ioth.use(stack)`` for
    an ioth stack, the DUT's namespace for the kernel."""

    def __init__(self, make: Factory, ambient: Callable[[], Any], ifindex: int) -> None:
        self._make = make
        self.ambient = ambient
        self.ifindex = ifindex  # (the index of the DUT's interface towards the peer)

    def __call__(self, family: int = socket.AF_INET6) -> Any:
        return self._make(family)


def _kernel6(ns_name: str) -> Factory:
    def make(family: int = socket.AF_INET6) -> socket.socket:
        with inside(ns_name):
            return socket.socket(family, socket.SOCK_STREAM)
    return make


@contextlib.contextmanager
def setup6(kind: str) -> Iterator[tuple[Factory, Factory]]:
    """As review s5's ``_setup`` with IPv6 too (2001:db8::1 the peer, ::2 the DUT, next to
    192.0.2.1 / .2): factories take the family (AF_INET6 by default); the peer's is a
    :class:`Peer` (it can fall silent)."""
    require_root()
    require_tools("ip")
    if kind == "ioth":
        from ioth.sockets import socket as isocket
        with kernel_lan("rv6") as (ns, stack, tap):
            _tcp_ready(stack)
            import ioth
            yield Peer(ns, tap), Dut(lambda family: isocket(stack, family, socket.SOCK_STREAM),
                                     lambda: ioth.use(stack), stack.if_nametoindex("vde0"))
    else:
        with netns("rk6") as peer, netns("rd6") as dut:
            # (no DAD on the pair: the link-local addresses are usable at once, as the
            # ioth stack's are after kernel_lan's wait_dad)
            peer.sh(f"ip link add va type veth peer name vb netns {dut.name} && "
                    f"sysctl -qw net.ipv6.conf.va.accept_dad=0 && "
                    f"ip addr add 192.0.2.1/24 dev va && ip addr add {PEER6}/64 dev va nodad"
                    f" && ip link set va up")
            dut.sh(f"sysctl -qw net.ipv6.conf.vb.accept_dad=0 && "
                   f"ip addr add 192.0.2.2/24 dev vb && ip addr add {DUT6}/64 dev vb nodad"
                   f" && ip link set vb up")
            with inside(dut.name):
                index = socket.if_nametoindex("vb")
            yield Peer(peer, "va"), Dut(_kernel6(dut.name), lambda: inside(dut.name), index)


def params(scenarios: list[Scenario], bugs: dict[Scenario, str]) -> list[Any]:
    """Two parameters per scenario, ``kernel`` and ``ioth``; a bug: strict xfail on ioth."""
    out = []
    for s in scenarios:
        out.append(pytest.param(s, "kernel", id=f"{s.__name__}-kernel"))
        marks = [pytest.mark.xfail(strict=True, reason=bugs[s])] if s in bugs else []
        out.append(pytest.param(s, "ioth", id=f"{s.__name__}-ioth", marks=marks))
    return out


class Envs:
    """The test environments of one test module, made on first use and kept until the
    module ends (an ioth stack on a TAP costs about 2 s to make: its IPv6 DAD); scenarios
    use ephemeral ports and close what they open, so they can share them."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._made: dict[tuple[str, bool], tuple[Factory, Factory]] = {}

    def get(self, kind: str, v6: bool) -> tuple[Factory, Factory]:
        """(peer, dut) factories of ``kind`` ("kernel" or "ioth"), IPv6-capable if ``v6``."""
        key = (kind, v6)
        if key not in self._made:
            self._made[key] = self._stack.enter_context((setup6 if v6 else _setup)(kind))
        return self._made[key]

    def close(self) -> None:
        """Tear every environment down."""
        self._stack.close()


def run(scenario: Scenario, kind: str, envs: Envs, v6: bool = False) -> None:
    """Run ``scenario`` against ``kind``: the kernel run is the oracle, ioth must equal it."""
    key = f"{scenario.__module__}.{scenario.__name__}"
    if key not in _ORACLE:
        _ORACLE[key] = scenario(*envs.get("kernel", v6))
    if kind == "kernel":
        return
    got = scenario(*envs.get("ioth", v6))
    want = _ORACLE[key]
    pairs = enumerate(zip(want, got, strict=False))
    diff = [f"  [{i}] kernel {w!r} ioth {g!r}" for i, (w, g) in pairs if w != g]
    assert got == want, "ioth differs from the kernel:\n" + "\n".join(
        diff or [f"  kernel {want!r}", f"  ioth   {got!r}"])


class _Closable(Protocol):
    def close(self) -> None: ...


def module_envs(make: Callable[[], _Closable]) -> Any:
    """The ``envs`` fixture of a review module (or conftest): ``make()``'s environments,
    made on first use and torn down when the module's tests are done
    (``envs = module_envs(Envs)``)."""

    @pytest.fixture(scope="module")
    def envs() -> Iterator[_Closable]:
        e = make()
        try:
            yield e
        finally:
            e.close()
    return envs
