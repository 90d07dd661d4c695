"""The switch runtime: a VDE-compatible switch server, and the ``switch://`` / ``hub://`` plugs.

A :class:`SwitchServer` owns a control directory DIR that Debian's ``vde_plug vde://DIR``,
QEMU's ``-nic vde,sock=DIR`` and ioth's own ``vde://`` plug can join (``shared/specs/vde.md``
section 3):

* ``DIR`` is created with mode 02700 (``dirmode``) and ``DIR/ctl`` listens with mode 0600
  (``mode``); an existing directory is used as it is (its mode is not changed) unless a live
  switch serves it; a stale ``ctl`` left by a dead switch is replaced.
* A client sends magic 0xfeedface, version 3, a type (0 any port, 1 port 0, ``N << 8`` port N),
  the ``sockaddr_un`` of its datagram socket and a description.  The switch binds
  ``DIR/NNN.FD`` (port, descriptor), connects it to the client and answers with its 110-byte
  ``sockaddr_un``.  EOF or an error on the control connection releases the port.
* Port groups: :meth:`SwitchServer.add_port_group` listens on ``DIR/NAME`` as well; ports
  opened through it get the group's untagged VLAN (``vde://DIR[NAME]`` reaches it).
* ``mtu=M`` in the client description (ioth clients send ``ioth: user=NAME pid=N mtu=M``) sets
  the port's largest frame to M + 18; other clients get vde_switch's 1518 (``default_mtu``).
* Data sockets have large buffers and sends never wait (``MSG_DONTWAIT``): a slow or dead port
  never stalls the others; EAGAIN/ENOBUFS drop the frame and count it on the port
  (``drop_send``).
* The datagram sockets of ports (VDE clients, socketpairs) are served by a data thread of the
  server's own, started with the first such port: a bare ``epoll`` loop that serves a quiet
  port's frame inline (one ``os.read``, the forwarding cache's rule applied in the loop, one
  ``os.write`` to the egress port's descriptor), with nothing else to look after (at low rates
  a wake-up per frame is the main cost of a switch).
  A reader thread per port blocked in ``recv`` (2 syscalls per frame instead of 3, ~10 % less
  CPU per frame) was measured in sessions 3 and 4 and removed: round trips were slower (the
  thread a client's ``send`` wakes waited longer for a CPU than the epoll thread: 25-30 us
  against 11-22 us per wake-up in ``rr-i2i``), kernel bulk through vde_plug 5-15 % slower, and
  threads of busy ports take turns on the GIL.  Everything else (control connections, the
  console, ageing, plug ports) stays on the engine; both threads take the server's lock to
  switch a frame, except the data thread's cache hits to a port with a single datagram
  endpoint (``LOCK_FREE``: a released port's socket is then closed by the data thread itself,
  between two batches of events, so that no descriptor is closed or reused under it).
  Measured in session 5 (callgrind, user-space instructions per forwarded frame in a
  ping-pong): 15,900 with the session 4 loop, 11,200 now, of which ~1,500 are the epoll wait,
  ~1,500 the read (the 64 KiB buffer a ``read`` allocates still costs less than reading into
  a reused buffer and copying: 13,300), ~700 the write, ~1,000 the GIL around the three
  syscalls; perf record puts ~40 % of the switch's CPU in the kernel (the wake-up, the context
  switch and the three syscalls per frame, as for vde_switch).  A data loop
  on the control thread (no second thread) showed no measurable difference in a minimal
  forwarding loop (main thread against a second thread: within the +-3 us noise).

Any other plug (``tap://t0``, ``vxvde://``, ...) can be a port too (:meth:`add_plug`), served
by the same engine thread.  Everything but the datagram ports runs on one
:class:`~ioth.runtime.engine.Engine`; the data thread and calls from other threads take the
server's lock.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import pwd
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ioth.errors import PlugClosedError, VNLError
from ioth.net.dgram import DgramPlug, set_bufs
from ioth.net.plug import ETH_HLEN, VLAN_HLEN, Plug
from ioth.net.plugs.vde import (
    REQ_HEADER,
    REQ_NEW_CONTROL,
    REQ_NEW_PORT0,
    SOCKADDR_UN_LEN,
    SWITCH_MAGIC,
    group_id,
    mtu_option,
    octal_option,
    pack_sockaddr_un,
)
from ioth.net.switch.core import (
    DEFAULT_AGEING,
    DEFAULT_TABLE_SIZE,
    MAX_FRAME,
    MAX_MTU,
    SwitchConfigError,
    SwitchCore,
)
from ioth.net.vnl import VNL, Style
from ioth.runtime.engine import Engine, TimerHandle

log = logging.getLogger(__name__)

DEFAULT_NUMPORTS = 32
DEFAULT_MODE = 0o600
DEFAULT_DIRMODE = 0o2700
#: MTU of clients that do not state one (vde_switch's frame limit is 1518 = 1500 + 18)
DEFAULT_MTU = 1500
REQ_MAX = 256  # vde_switch reads at most this many bytes of request
REQ_MIN = REQ_HEADER.size + SOCKADDR_UN_LEN  # 122
RX_BATCH = 64
#: batches a plug port may read in one turn before the other ports get theirs
RX_DRAIN = 8
#: a datagram port in quiet mode (one frame per wake-up) drains after this many wake-ups; each
#: drain that finds one frame or none doubles the interval up to :data:`PROBE_MAX`, a backlog
#: resets it (a drain ends in a failed ``recv``: a syscall and an exception, ~14,000
#: instructions of which most build the exception)
PROBE_EVERY = 8
#: the longest quiet interval (PROBE_EVERY: a drain every PROBE_EVERY wake-ups, as before)
PROBE_MAX = 64
#: control connections that have not sent their request yet, at most
MAX_PENDING = 64
#: the epoll data thread switches a quiet port's frame inline, applying the forwarding cache
#: (:attr:`SwitchCore.flows`) itself; False: every wake-up calls ``_rx_sock`` (A/B knob, both
#: paths give the same frames and counters)
FAST_PATH = True
#: the inline fast path reads and writes the datagram sockets with ``os.read``/``os.write`` on
#: their descriptors (safe: a port's release takes the socket away under the server's lock and
#: it is closed after that, by the data thread with LOCK_FREE); False: ``sock.recv``/``sock.send``
#: (whose argument tuples and parsing cost ~700 instructions per frame).  A/B knob.
FD_IO = True
#: events one ``epoll_wait`` of the data thread returns at most (CPython allocates room for
#: this many events on every call: 1023 unless told; 32 x 12 bytes stay in its small-object
#: allocator, 64 went to malloc)
MAX_EVENTS = 32
#: the data thread serves cache hits to single-endpoint ports without the server's lock (~1,000
#: instructions per frame): it takes the lock only for everything else (a miss, a drain, a
#: port with several endpoints or a plug).  Safe because a released port's socket is closed by
#: the data thread itself between two batches of events (so a descriptor it holds is never
#: closed, let alone reused, under it), and what a hit touches (counters, a MAC entry's time,
#: the cache and send tables) is read or written one attribute or dict item at a time.  A
#: counter's ``+=`` next to an engine thread's update of the same counter (a plug port's frames
#: to the same egress) is a read-modify-write: it stays whole only because CPython with a GIL
#: switches threads at call and loop boundaries, not between the load and the store.  A
#: free-threaded build has no such guarantee, so there the lock stays.  False: the lock is held
#: for every wake-up (A/B knob).
LOCK_FREE = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
_MTU_RE = re.compile(rb"(?:^|[\s,;])mtu=(\d+)")
_RECV_SIZE = MAX_FRAME + 1
_DONTWAIT = socket.MSG_DONTWAIT


def mtu_from_description(description: bytes, default: int = DEFAULT_MTU) -> int:
    """The ``mtu=M`` an ioth client announces in its description, clamped to 68..65535."""
    m = _MTU_RE.search(description)
    if m is None:
        return default
    return max(68, min(MAX_MTU, int(m.group(1)[:6])))


def default_node_dir() -> str:
    """``/tmp/vdenode_$USER`` (``/tmp/vdenode_uUID`` without a passwd entry), as vdeplug4."""
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = f"u{os.geteuid()}"
    return f"/tmp/vdenode_{name}"


def derive_modes(mode: int | None, dirmode: int | None) -> tuple[int, int]:
    """vde_switch's rule: one of mode/dirmode given implies the other."""
    if mode is None and dirmode is None:
        return DEFAULT_MODE, DEFAULT_DIRMODE
    if mode is not None and dirmode is None:
        m = mode & 0o666
        return m, 0o2000 | m | (m & 0o444) >> 2 | (m & 0o222) >> 1
    if mode is None:
        assert dirmode is not None
        return dirmode & 0o666, dirmode
    assert dirmode is not None
    return mode & 0o666, dirmode


class _Endpoint:
    """One attachment to a port: a datagram socket (VDE client or socketpair) or a plug."""

    __slots__ = ("batch", "ctl", "description", "fds", "max_frame", "path", "plug", "port",
                 "probe", "quiet", "send", "sock", "timer")

    def __init__(self, port: int, max_frame: int, description: str) -> None:
        self.port = port
        self.max_frame = max_frame
        self.description = description
        self.sock: socket.socket | None = None
        self.ctl: socket.socket | None = None
        self.path = ""
        self.plug: Plug | None = None
        self.fds: list[int] = []
        self.timer: TimerHandle | None = None
        #: datagram ports: wake-ups left that read one frame (quiet mode) before the next
        #: drain until EAGAIN; 0: drain now
        self.quiet = 0
        #: the next quiet interval (PROBE_EVERY .. PROBE_MAX)
        self.probe = PROBE_EVERY
        #: send one frame: ``send(frame, socket.MSG_DONTWAIT)``; returns something false or
        #: raises OSError when it could not go
        self.send: Callable[[bytes, int], object] = _refuse

    @property
    def drain(self) -> bool:
        """Whether the next wake-up reads the port until EAGAIN (False: quiet mode, one
        frame)."""
        return self.quiet == 0

    def ident(self) -> int:
        """The endpoint id shown by ``port/print`` (the control descriptor, as vde_switch)."""
        if self.ctl is not None:
            return self.ctl.fileno()
        return self.fds[0] if self.fds else -1


def _refuse(frame: bytes, flags: int = 0) -> None:
    raise OSError(errno.EBADF, "endpoint closed")


def _plug_sender(plug: Plug) -> Callable[[bytes, int], object]:
    """``send(frame, flags)`` for a plug port (plugs never block: the flags are not needed)."""
    send = plug.send

    def send_frame(frame: bytes, flags: int = 0) -> object:
        return send(frame)
    return send_frame


class SwitchServer:
    """A switch (or hub) serving a VDE control directory, plus any plugs given as ports."""

    def __init__(self, path: str, *, engine: Engine | None = None, hub: bool = False,
                 numports: int = DEFAULT_NUMPORTS, mode: int | None = None,
                 dirmode: int | None = None, group: str | None = None,
                 table_size: int = DEFAULT_TABLE_SIZE, ageing: float = DEFAULT_AGEING,
                 default_mtu: int = DEFAULT_MTU, mgmt: str | None = None,
                 mgmt_mode: int = 0o600) -> None:
        if numports < 2:
            raise SwitchConfigError(errno.EINVAL, f"numports={numports}: need at least 2")
        if not 68 <= default_mtu <= MAX_MTU:
            raise SwitchConfigError(errno.EINVAL, f"mtu={default_mtu} out of range 68..65535")
        self.own_engine = engine is None
        self._pid = os.getpid()  # (close in a forked child: see close)
        self.engine = engine if engine is not None else Engine(name=f"ioth-switch {path}")
        self.core = SwitchCore(hub=hub, table_size=table_size, ageing=ageing)
        self.numports = numports
        self.default_mtu = default_mtu
        self.mode, self.dirmode = derive_modes(mode, dirmode)
        self.gid = group_id(group) if group else -1
        self.started = time.monotonic()
        self.closed = False
        self.recv_errors = 0  # datagrams dropped on arrival (oversize, socket errors)
        self.rejected = 0  # control connections refused (bad request, no free port)
        self._lock = threading.RLock()
        self._endpoints: dict[int, list[_Endpoint]] = {}
        #: ports made by :meth:`create_port`: they keep their configuration while unplugged
        self.persistent: set[int] = set()
        self._tx: dict[int, tuple[Callable[[bytes, int], object], ...]] = {}
        #: port -> descriptor of its datagram socket, for ports with one endpoint that is a
        #: datagram socket (the fast path writes there; everything else goes through _tx)
        self._tx_fd: dict[int, int] = {}
        self._pending: dict[int, tuple[socket.socket, bytearray, int | None]] = {}
        self._listeners: dict[int, tuple[socket.socket, str, int | None]] = {}
        self._sweep: TimerHandle | None = None
        # the data thread: an epoll of the ports' datagram sockets (fd -> receive function)
        # and a pipe that wakes it to stop; made now, the thread starts with the first port
        # (after a daemon's fork)
        self._data_eps: dict[int, _Endpoint] = {}
        self._data_thread: threading.Thread | None = None
        self._data_poll: select.epoll | None = None
        self._data_wake = (-1, -1)
        #: sockets of released ports the data thread closes at its next wake-up (LOCK_FREE)
        self._data_closing: list[socket.socket] = []
        self._data_stopping = False
        self.on_shutdown: Callable[[], None] = self.close
        self.console: Any = None
        self._created_dir = False
        self.directory = self._make_dir(path)
        self.ctl_path = os.path.join(self.directory, "ctl")
        try:
            self._data_poll = select.epoll()
            self._data_wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._data_poll.register(self._data_wake[0], select.EPOLLIN)
            self._listen(self.ctl_path, None)
            self._schedule_sweep()
            if mgmt is not None:
                from ioth.net.switch.console import ManagementConsole
                self.console = ManagementConsole(self, mgmt, mgmt_mode)
        except BaseException:
            self.close()
            raise

    @property
    def lock(self) -> threading.RLock:
        """The lock serialising the data path and configuration changes."""
        return self._lock

    # -- setup ----------------------------------------------------------------------------------
    def _make_dir(self, path: str) -> str:
        path = os.path.abspath(path)
        try:
            os.mkdir(path, 0o700)
            self._created_dir = True
        except FileExistsError:
            if not os.path.isdir(path):
                raise OSError(errno.ENOTDIR, f"{path} exists and is not a directory") from None
        ctl = os.path.join(path, "ctl")
        if len(os.fsencode(ctl)) + 8 >= 108:
            raise OSError(errno.ENAMETOOLONG, f"switch directory path too long: {path}")
        if os.path.exists(ctl):
            if socket_in_use(ctl):
                raise OSError(errno.EADDRINUSE, f"a switch is already running on {path}")
            os.unlink(ctl)
        if self._created_dir:  # an existing directory keeps its owner and mode
            if self.gid >= 0:
                os.chown(path, -1, self.gid)
            os.chmod(path, self.dirmode)
        return os.path.realpath(path)

    def _listen(self, path: str, vlan: int | None) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(path)
            if self.gid >= 0:
                os.chown(path, -1, self.gid)
            os.chmod(path, self.mode)
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror}") from None
        fd = sock.fileno()
        self._listeners[fd] = (sock, path, vlan)
        self.engine.add_reader(fd, lambda: self._accept(fd))

    def add_port_group(self, name: str, vlan: int | None = None) -> None:
        """Listen on ``DIR/NAME`` too; ports opened there get untagged VLAN ``vlan``."""
        if not name or "/" in name or name in (".", "..", "ctl") or name[0].isdigit():
            raise SwitchConfigError(errno.EINVAL, f"bad port group name {name!r}")
        if vlan is not None:
            with self._lock:
                if vlan not in self.core.vlans:
                    self.core.create_vlan(vlan)
        self._listen(os.path.join(self.directory, name), vlan)

    def start(self) -> SwitchServer:
        """Start the server's own engine thread (no-op with a shared engine); returns self."""
        if self.own_engine:
            self.engine.start()
        return self

    def _schedule_sweep(self) -> None:
        interval = max(1.0, min(10.0, self.core.ageing / 4))
        self._sweep = self.engine.call_later(interval, self._do_sweep)

    def _do_sweep(self) -> None:
        if self.closed:
            return
        with self._lock:
            self.core.expire(self.engine.clock())
        self._schedule_sweep()

    # -- ports ----------------------------------------------------------------------------------
    def free_port(self) -> int | None:
        """The lowest unused port number 1..numports-1, or None."""
        for n in range(1, self.numports):
            if n not in self._endpoints and n not in self.core.ports:
                return n
        return None

    def _attach(self, ep: _Endpoint, vlan: int | None = None) -> None:
        """Add ``ep`` to its port (creating the port); caller holds the lock."""
        eps = self._endpoints.get(ep.port)
        if eps is None:
            if ep.port not in self.core.ports:
                self.core.add_port(ep.port, ep.max_frame, ep.description)
                if vlan is not None:
                    self.core.set_untagged_vlan(ep.port, vlan)
            else:
                self.core.set_max_frame(ep.port, ep.max_frame)
                self.core.set_active(ep.port, True)
            eps = self._endpoints[ep.port] = []
        else:
            self.core.set_max_frame(ep.port, min(e.max_frame for e in [*eps, ep]))
        eps.append(ep)
        self._set_tx(ep.port, eps)

    def _detach(self, ep: _Endpoint) -> None:
        """Remove ``ep``; the port goes when its last endpoint does.  Caller holds the lock."""
        eps = self._endpoints.get(ep.port)
        if eps is None or ep not in eps:
            return
        eps.remove(ep)
        if eps:
            self._set_tx(ep.port, eps)
            self.core.set_max_frame(ep.port, min(e.max_frame for e in eps))
        else:
            del self._endpoints[ep.port]
            self._tx.pop(ep.port, None)
            self._tx_fd.pop(ep.port, None)
            with contextlib.suppress(SwitchConfigError):
                if ep.port in self.persistent:
                    self.core.set_active(ep.port, False)
                else:
                    self.core.remove_port(ep.port)

    def _set_tx(self, port: int, eps: list[_Endpoint]) -> None:
        """Update the send functions of ``port``; caller holds the lock."""
        self._tx[port] = tuple(e.send for e in eps)
        if len(eps) == 1 and eps[0].sock is not None and eps[0].plug is None:
            self._tx_fd[port] = eps[0].sock.fileno()
        else:
            self._tx_fd.pop(port, None)

    def create_port(self, port: int) -> None:
        """Create port ``port`` before anyone plugs in, so that it can be configured; it is
        only used by clients asking for it by number and survives their departure."""
        with self._lock:
            if not 0 <= port < self.numports:
                raise SwitchConfigError(errno.EINVAL,
                                        f"port {port} out of range 0..{self.numports - 1}")
            if port in self.core.ports:
                raise SwitchConfigError(errno.EEXIST, f"port {port} already exists")
            self.core.add_port(port, active=False)
            self.persistent.add(port)

    def remove_port(self, port: int) -> None:
        """Remove a port nobody is plugged into (undoes :meth:`create_port`)."""
        with self._lock:
            if port not in self.core.ports:
                raise SwitchConfigError(errno.ENXIO, f"port {port} does not exist")
            if port in self._endpoints:
                raise SwitchConfigError(errno.EADDRINUSE, f"port {port} is in use")
            self.core.remove_port(port)
            self.persistent.discard(port)

    def endpoints(self, port: int) -> list[tuple[int, str, str]]:
        """(id, module, description) of each endpoint of ``port`` (for the console)."""
        with self._lock:
            return [(ep.ident(), "plug" if ep.plug is not None else "unix prog", ep.description)
                    for ep in self._endpoints.get(port, [])]

    def active_ports(self) -> list[int]:
        """Port numbers with at least one endpoint."""
        with self._lock:
            return sorted(self._endpoints)

    def add_socket_port(self, sock: socket.socket, mtu: int, description: str,
                        port: int | None = None) -> int:
        """Make a connected datagram socket (e.g. one end of a socketpair) a port."""
        with self._lock:
            number = self._pick_port(port)
            ep = _Endpoint(number, mtu + ETH_HLEN + VLAN_HLEN, description)
            self._setup_sock(ep, sock)
            self._attach(ep)
        self._register(ep)
        return number

    def add_plug(self, plug: Plug, port: int | None = None) -> int:
        """Make any plug (``tap://``, ``vxvde://``, ...) a port of this switch; returns it."""
        with self._lock:
            number = self._pick_port(port)
            ep = _Endpoint(number, min(plug.max_frame, MAX_FRAME), plug.describe())
            ep.plug = plug
            ep.fds = list(plug.filenos())
            ep.send = _plug_sender(plug)  # False: dropped
            self._attach(ep)
        self._register(ep)
        return number

    def _pick_port(self, port: int | None) -> int:
        if port is None:
            number = self.free_port()
            if number is None:
                raise SwitchConfigError(errno.ENOSPC, f"all {self.numports - 1} ports in use")
            return number
        if not 0 <= port < self.numports:
            raise SwitchConfigError(errno.EINVAL,
                                    f"port {port} out of range 0..{self.numports - 1}")
        return port

    def _setup_sock(self, ep: _Endpoint, sock: socket.socket) -> None:
        sock.setblocking(False)
        set_bufs(sock)
        ep.sock = sock
        ep.fds = [sock.fileno()]
        ep.send = sock.send

    def _register(self, ep: _Endpoint) -> None:
        if ep.plug is not None:
            for fd in ep.fds:
                self.engine.add_reader(fd, functools.partial(self._rx_plug, ep))
            self.engine.call_soon_threadsafe(lambda: self._rx_plug(ep))
        else:
            assert ep.sock is not None
            fd = ep.fds[0]
            with self._lock:
                if self.closed:
                    return
                poll = self._data_poll
                assert poll is not None
                if self._data_thread is None:
                    self._start_data_thread(poll)
                self._data_eps[fd] = ep
                poll.register(fd, select.EPOLLIN)
        if ep.ctl is not None:
            self.engine.add_reader(ep.ctl.fileno(), lambda: self._ctl_event(ep))

    def _start_data_thread(self, poll: select.epoll) -> None:
        """Start the data thread; caller holds the lock."""
        thread = threading.Thread(target=self._data_loop, args=(poll, self._data_wake[0]),
                                  name=f"ioth-switch-data {self.directory}", daemon=True)
        self._data_thread = thread
        thread.start()

    def _data_loop(self, poll: select.epoll, wake: int) -> None:
        """The data thread: wait for datagram ports to be readable and switch what they hold.

        A port in quiet mode (see :meth:`_rx_sock`) is served right here, without a call per
        frame: one read, the forwarding cache rule of :attr:`SwitchCore.flows` applied inline
        (no call into the core on a hit), one write to the egress port's socket.  At low rates
        a frame costs little more than the wake-up, and the less Python code and data a
        wake-up touches, the less it costs (the caches are cold after the other processes ran):
        the lock is taken and the clock read once per wake-up.  Closing needs no check here: a
        released port leaves ``eps`` (under the lock, before its socket is closed), and
        :meth:`close` wakes the thread."""
        wait = poll.poll
        eps = self._data_eps
        acquire = self._lock.acquire
        release = self._lock.release
        core = self.core
        flows = core.flows
        totals = core.counters
        forward = core.forward_uncached  # (after a cache miss: the cache is not asked twice)
        count_drop = core.count_send_drop
        tx = self._tx
        tx_fd = self._tx_fd
        clock = self.engine.clock
        rx_sock = self._rx_sock
        fast = FAST_PATH
        fd_io = FD_IO
        lock_free = LOCK_FREE and fast and fd_io
        read = os.read
        write = os.write
        while True:
            try:
                events = wait(None, MAX_EVENTS)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return  # the epoll was closed under us
            woken = False
            locked = not lock_free
            if locked:
                acquire()
            try:
                now = clock()
                ageing = core.ageing
                for fd, _ in events:
                    ep = eps.get(fd)
                    if ep is None:
                        woken = woken or fd == wake
                        continue
                    quiet = ep.quiet
                    if not (fast and quiet):
                        rx_sock(ep)  # (takes the lock)
                        continue
                    sock = ep.sock
                    if sock is None:
                        continue  # (being released)
                    ep.quiet = quiet - 1
                    try:
                        frame = read(fd, _RECV_SIZE) if fd_io else sock.recv(_RECV_SIZE)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        self.recv_errors += 1
                        continue
                    port = ep.port
                    flow = flows.get(frame[:12])
                    if flow is not None:
                        f_port, f_rx, f_src, f_dst, f_tx, f_max, egress = flow
                        n = len(frame)
                        if (f_port == port and n >= ETH_HLEN
                                and not (frame[12] == 0x81 and frame[13] == 0)
                                and now - f_dst.seen <= ageing and n <= f_max):
                            # a hit: SwitchCore.forward_cached's rule (see SwitchCore.flows)
                            f_src.seen = now
                            f_rx.rx_frames += 1
                            f_rx.rx_bytes += n
                            f_tx.tx_frames += 1
                            f_tx.tx_bytes += n
                            totals.unicast += 1
                            if fd_io:
                                out = tx_fd.get(egress)
                                if out is not None:
                                    try:
                                        write(out, frame)
                                    except OSError:
                                        # EAGAIN/ENOBUFS: the receiver is slow; ECONNREFUSED:
                                        # it is gone
                                        count_drop(egress)
                                    continue
                            if not locked:
                                acquire()
                                locked = True
                            for send in tx.get(egress, ()):
                                try:
                                    if not send(frame, _DONTWAIT):  # a plug refused it
                                        count_drop(egress)
                                except OSError:
                                    count_drop(egress)
                            continue
                    if len(frame) > MAX_FRAME:
                        self.recv_errors += 1
                        continue
                    if not locked:
                        acquire()
                        locked = True
                    for egress, data in forward(port, frame, now):
                        for send in tx.get(egress, ()):
                            try:
                                if not send(data, _DONTWAIT):
                                    count_drop(egress)
                            except OSError:
                                count_drop(egress)
            except Exception:
                log.exception("switch %s: port receive failed", self.directory)
            finally:
                if locked:
                    release()
            if woken and self._data_woken(wake):
                return

    def _data_woken(self, wake: int) -> bool:
        """The data thread's wake-up pipe was readable: close the sockets of released ports
        (between two batches: no descriptor of the batch is in use); True: stop."""
        with contextlib.suppress(OSError):
            os.read(wake, 4096)
        with self._lock:
            closing, self._data_closing = self._data_closing, []
            stop = self._data_stopping
        for sock in closing:
            sock.close()
        return stop

    def _close_data_sock(self, sock: socket.socket) -> None:
        """Close a released port's datagram socket; with LOCK_FREE the data thread does it at
        its next wake-up (it may hold the descriptor right now, without the lock)."""
        with self._lock:
            thread = self._data_thread
            w = self._data_wake[1]
            defer = (LOCK_FREE and thread is not None and thread.is_alive() and w >= 0
                     and thread is not threading.current_thread()
                     and os.getpid() == self._pid)
            if defer:
                self._data_closing.append(sock)
        if not defer:
            sock.close()
            return
        with contextlib.suppress(OSError):  # (full: a wake-up is pending already)
            os.write(w, b"\0")

    def _forget_data_fd(self, fd: int) -> bool:
        """Stop serving ``fd`` on the data thread (False if it was not there)."""
        with self._lock:
            if self._data_eps.pop(fd, None) is None:
                return False
            if self._data_poll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._data_poll.unregister(fd)
            return True

    def _stop_data_thread(self) -> None:
        with self._lock:
            thread, poll, (r, w) = self._data_thread, self._data_poll, self._data_wake
            self._data_thread = None
            self._data_poll = None
            self._data_wake = (-1, -1)
            self._data_eps.clear()
            self._data_stopping = True
        if poll is None:
            return
        if thread is not None and w >= 0:
            with contextlib.suppress(OSError):
                os.write(w, b"\0")
            if thread is not threading.current_thread():
                thread.join(5.0)
        with self._lock:
            closing, self._data_closing = self._data_closing, []
        for sock in closing:  # (what the data thread did not close before it ended)
            sock.close()
        poll.close()
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)

    # -- control connections ------------------------------------------------------------------
    def _accept(self, fd: int) -> None:
        entry = self._listeners.get(fd)
        if entry is None:
            return
        sock, _, vlan = entry
        for _ in range(16):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("switch %s: accept: %s", self.directory, exc)
                return
            if len(self._pending) >= MAX_PENDING:
                self.rejected += 1  # too many clients that connected and said nothing yet
                conn.close()
                continue
            conn.setblocking(False)
            cfd = conn.fileno()
            self._pending[cfd] = (conn, bytearray(), vlan)
            self.engine.add_reader(cfd, lambda cfd=cfd: self._request(cfd))  # type: ignore[misc]

    def _drop_pending(self, cfd: int) -> None:
        entry = self._pending.pop(cfd, None)
        self.engine.remove_reader(cfd)
        if entry is not None:
            entry[0].close()

    def _request(self, cfd: int) -> None:
        entry = self._pending.get(cfd)
        if entry is None:
            return
        conn, buf, vlan = entry
        try:
            chunk = conn.recv(REQ_MAX - len(buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop_pending(cfd)
            return
        buf += chunk
        if len(buf) < REQ_MIN:
            return  # the rest of the header is on its way
        del self._pending[cfd]
        self.engine.remove_reader(cfd)
        try:
            self._open_port(conn, bytes(buf), vlan)
        except (OSError, SwitchConfigError, ValueError) as exc:
            self.rejected += 1
            log.warning("switch %s: refused a client: %s", self.directory, exc)
            conn.close()

    def _open_port(self, conn: socket.socket, req: bytes, vlan: int | None) -> None:
        magic, version, req_type = REQ_HEADER.unpack_from(req)
        if magic != SWITCH_MAGIC or version != 3:
            raise ValueError(f"bad request magic {magic:#x} version {version}")
        kind = req_type & 0xFF
        if kind == REQ_NEW_PORT0:
            wanted: int | None = 0
        elif kind == REQ_NEW_CONTROL:
            wanted = (req_type >> 8) or None
        else:
            raise ValueError(f"bad request type {req_type:#x}")
        family = int.from_bytes(req[12:14], "little")
        client = os.fsdecode(req[14:REQ_MIN].split(b"\0", 1)[0])
        if family != socket.AF_UNIX or not client:
            raise ValueError("request without a client socket address")
        description_raw = req[REQ_MIN:].split(b"\0", 1)[0]
        description = description_raw.decode("utf-8", "replace")
        mtu = mtu_from_description(description_raw, self.default_mtu)
        data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            data.connect(client)
            with self._lock:
                if self.closed:
                    raise OSError(errno.ESHUTDOWN, "switch closed")
                number = self._pick_port(wanted)
                path = os.path.join(self.directory, f"{number:03d}.{data.fileno()}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                data.bind(path)
                os.chmod(path, self.mode)
                if self.gid >= 0:
                    os.chown(path, -1, self.gid)
                ep = _Endpoint(number, mtu + ETH_HLEN + VLAN_HLEN, description)
                ep.path = path
                ep.ctl = conn
                self._setup_sock(ep, data)
                self._attach(ep, vlan)
                try:
                    conn.settimeout(0.5)
                    conn.sendall(pack_sockaddr_un(path))
                    conn.setblocking(False)
                except OSError:
                    self._detach(ep)
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                    raise
        except BaseException:
            data.close()
            raise
        self._register(ep)

    def _ctl_event(self, ep: _Endpoint) -> None:
        assert ep.ctl is not None
        try:
            chunk = ep.ctl.recv(256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.release(ep)
        # anything a client writes on ctl after the request is ignored, as vde_switch does

    def release(self, ep: _Endpoint) -> None:
        """Close one endpoint and free its port if it was the last one."""
        with self._lock:
            if ep.path:  # gone from the directory before the port is gone from the switch
                with contextlib.suppress(OSError):
                    os.unlink(ep.path)
                ep.path = ""
            self._detach(ep)
            fds = list(ep.fds)
            if ep.ctl is not None:
                fds.append(ep.ctl.fileno())
            if ep.timer is not None:
                ep.timer.cancel()
            sock, ep.sock = ep.sock, None  # the data thread stops using it from here on
        for fd in fds:
            if fd >= 0 and not self._forget_data_fd(fd):
                self.engine.remove_reader(fd)
        if sock is not None:
            self._close_data_sock(sock)
        if ep.ctl is not None:
            ep.ctl.close()
        if ep.plug is not None:
            ep.plug.close()
        ep.fds = []
        ep.send = _refuse

    def close_endpoint(self, port: int, ident: int) -> bool:
        """Disconnect the endpoint ``ident`` (as ``port/print`` shows it) of ``port``."""
        with self._lock:
            eps = [ep for ep in self._endpoints.get(port, []) if ep.ident() == ident]
        for ep in eps:
            self.engine.call_soon_threadsafe(lambda ep=ep: self.release(ep))  # type: ignore[misc]
        return bool(eps)

    # -- the data path --------------------------------------------------------------------------
    def _rx_sock(self, ep: _Endpoint) -> None:
        """A datagram port is readable: switch what it holds.

        Draining until EAGAIN costs a failed ``recv`` (a syscall and an exception) per
        wake-up, which at low rates is paid for every frame.  So a port whose last drain found
        a single frame is in *quiet* mode: one frame per wake-up, no probe (the socket is
        level-triggered: anything left wakes the data thread again), and a drain
        after :data:`PROBE_EVERY` wake-ups (twice as many after each quiet drain, up to
        :data:`PROBE_MAX`) to notice a backlog, which switches the port back to draining up to
        :data:`RX_BATCH` frames per wake-up.
        """
        sock = ep.sock
        if sock is None:
            return
        with self._lock:
            if self.closed or ep.sock is None:
                return
            if ep.quiet:
                ep.quiet -= 1
                limit = 1
            else:
                limit = RX_BATCH
            # recv() of MAX_FRAME + 1 bytes measured faster than recv_into + copy; a datagram
            # longer than MAX_FRAME comes back truncated to MAX_FRAME + 1 and is dropped
            recv = sock.recv
            forward = self.core.forward
            tx = self._tx
            port = ep.port
            now = self.engine.clock()
            count = 0
            while count < limit:
                try:
                    frame = recv(_RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.recv_errors += 1
                    break
                count += 1
                if len(frame) > MAX_FRAME:
                    self.recv_errors += 1
                    continue
                for egress, data in forward(port, frame, now):
                    for send in tx.get(egress, ()):
                        try:
                            if not send(data, _DONTWAIT):  # a plug refused it
                                self.core.count_send_drop(egress)
                        except OSError:
                            # EAGAIN/ENOBUFS: the receiver is slow; ECONNREFUSED: it is gone
                            self.core.count_send_drop(egress)
            if limit > 1:
                if count <= 1:  # quiet mode: single frames until the next probe
                    probe = ep.probe
                    ep.quiet = probe - 1
                    ep.probe = min(probe * 2, max(PROBE_MAX, PROBE_EVERY))
                else:
                    ep.probe = PROBE_EVERY

    def _rx_plug(self, ep: _Endpoint) -> None:
        plug = ep.plug
        if plug is None:
            return
        recv_frames = plug.recv_frames
        forward = self.core.forward
        count_drop = self.core.count_send_drop
        tx = self._tx
        port = ep.port
        frames: list[bytes] | None = []
        with self._lock:
            if self.closed or ep.plug is None:
                return
            now = self.engine.clock()
            # drain the port (up to RX_DRAIN batches) in one wake-up: one selector round per
            # batch would cost a select() and a callback for every RX_BATCH frames
            for _ in range(RX_DRAIN):
                try:
                    frames = recv_frames(RX_BATCH)
                except PlugClosedError:
                    frames = None
                    break
                except OSError as exc:
                    log.warning("switch %s: port %d (%s): %s", self.directory, port,
                                ep.description, exc)
                    frames = []
                    break
                for frame in frames:
                    for egress, data in forward(port, frame, now):
                        for send in tx.get(egress, ()):
                            try:
                                if not send(data, _DONTWAIT):  # a plug refused it
                                    count_drop(egress)
                            except OSError:
                                # EAGAIN/ENOBUFS: the receiver is slow; ECONNREFUSED: gone
                                count_drop(egress)
                if len(frames) < RX_BATCH:
                    break
            if frames is not None:
                when = plug.poll_at()
                if ep.timer is not None:
                    ep.timer.cancel()
                    ep.timer = None
                if when is None and len(frames) >= RX_BATCH:
                    when = now  # more is waiting: come back after the other ports had a turn
                if when is not None:
                    # a timer set from the engine thread needs no wake-up (no pipe write)
                    ep.timer = self.engine.call_at(when, lambda: self._rx_plug(ep))
        if frames is None:
            self.release(ep)

    # -- shutting down --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """The ``shutdown`` management command: runs :attr:`on_shutdown` off the hot path."""
        self.engine.call_soon_threadsafe(self.on_shutdown)

    def adopt(self) -> None:
        """This process takes the server over from the one that made it (a daemon's fork
        whose parent exits): its :meth:`close` then really closes (see there)."""
        self._pid = os.getpid()

    def close(self) -> None:
        """Disconnect every port, remove the sockets and the directory (if we made it).

        In a forked child the server is only marked closed: its directory, epoll set, wake
        pipe and threads belong to the parent, which goes on switching (unless the child
        adopted it with :meth:`adopt`)."""
        if os.getpid() != self._pid:
            self.closed = True
            return
        with self._lock:
            if self.closed:
                return
            self.closed = True
            eps = [ep for eps in self._endpoints.values() for ep in eps]
            pending = list(self._pending)
            listeners = list(self._listeners.items())
            self._listeners.clear()
            if self._sweep is not None:
                self._sweep.cancel()
        if self.own_engine and not self.engine.in_engine_thread():
            self.engine.stop()
        if self.console is not None:
            self.console.close()
        for ep in eps:
            self.release(ep)
        self._stop_data_thread()
        for cfd in pending:
            self._drop_pending(cfd)
        for fd, (sock, path, _) in listeners:
            self.engine.remove_reader(fd)
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        if self._created_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self.directory)
        if self.own_engine:
            if self.engine.in_engine_thread():
                self.engine.stop()
            else:
                self.engine.close()

    def __enter__(self) -> SwitchServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def socket_in_use(path: str) -> bool:
    """Whether something accepts connections on the AF_UNIX stream socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


# -- switch:// and hub:// ---------------------------------------------------------------------
class SwitchPlug(DgramPlug):
    """``switch://DIR[opts]``: start a switch on DIR in this process; this plug is a port of it.

    Options (vdeplug4's): ``mode=`` (socket mode, octal, default 0600), ``dirmode=`` (default
    02700), ``grp=`` (group owning the sockets), ``hashsize=`` (MAC table entries, default 4096),
    ``hashseed=`` (accepted for compatibility, unused), ``expiretime=`` (ageing, default 120 s);
    ioth's: ``numports=`` (default 32), ``mtu=`` (MTU of this plug's own port, default 1500, up to
    65535; clients state theirs).  Default DIR: ``/tmp/vdenode_$USER``.  The switch runs on its
    own engine thread and goes away when the plug is closed.
    """

    STYLE: ClassVar[Style] = "bracket"
    KEYS: ClassVar[tuple[str, ...]] = ("mode", "dirmode", "grp", "hashsize", "hashseed",
                                      "expiretime", "numports", "mtu")
    HUB: ClassVar[bool] = False

    def __init__(self, server: SwitchServer, sock: socket.socket, mtu: int, vnl: str) -> None:
        super().__init__(vnl, mtu)
        self.server = server
        self._set_socket(sock)
        self._init_buffer(max(mtu + ETH_HLEN + VLAN_HLEN, 1518) + 64)

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> SwitchPlug:
        """Start the switch and plug into it."""
        mtu = mtu_option(vnl, kwargs, DEFAULT_MTU, MAX_MTU)
        if kwargs:
            raise VNLError(f"VNL {vnl.text!r}: unexpected arguments {sorted(kwargs)}")

        numports = vnl.int_option("numports", DEFAULT_NUMPORTS)
        hashsize = vnl.int_option("hashsize", DEFAULT_TABLE_SIZE)
        expire = vnl.int_option("expiretime", int(DEFAULT_AGEING))
        for key, value, low in (("numports", numports, 2), ("hashsize", hashsize, 1),
                                ("expiretime", expire, 1)):
            if value < low:
                raise VNLError(f"VNL {vnl.text!r}: {key}={value} must be >= {low}")
        path = vnl.address or default_node_dir()
        server = SwitchServer(path, hub=cls.HUB, numports=numports,
                              mode=octal_option(vnl, "mode", None),
                              dirmode=octal_option(vnl, "dirmode", None),
                              group=vnl.options.get("grp") or None,
                              table_size=hashsize, ageing=float(expire))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            server.add_socket_port(theirs, mtu, f"{cls.__name__}: pid={os.getpid()} mtu={mtu}")
            server.start()
        except BaseException:
            server.close()
            mine.close()
            theirs.close()
            raise
        return cls(server, mine, mtu, vnl.text or f"{'hub' if cls.HUB else 'switch'}://{path}")

    def close(self) -> None:
        """Stop the switch (every other port is disconnected) and close this port."""
        if not self.closed:
            self.server.close()
            self.server.engine.close()
            self._sock.close()
        super().close()

    def describe(self) -> str:
        """VNL and the switch directory."""
        return f"{self.vnl} (serving {self.server.directory})"


class HubPlug(SwitchPlug):
    """``hub://DIR[opts]``: like ``switch://`` but every frame goes to every other port."""

    HUB: ClassVar[bool] = True
