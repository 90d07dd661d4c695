"""TCP performance of ioth stacks against real peers measured in the same run (GitHub issue 5).

Cases (``--only`` takes a comma list of keys; default: all)::

  bulk (Gbit/s, bytes counted by the receiver from its first byte to EOF)
    sw1500 / sw65520   ioth -> ioth, two processes, ``ioth switch`` + ``vde://DIR[mtu=N]``
    k2i1500 / k2i65520 / k2ioff   kernel -> ioth through ``tap://T[netns=NS/up(/mtu/offload)]``
    i2k1500 / i2k65520 / i2koff   ioth -> kernel through the same taps
    veth / veth65520   reference: kernel iperf3 -> kernel iperf3 over a veth pair
    vde                reference: kernel iperf3 -> iperf3 through Debian vde_switch + vde_plug taps
  round trips/s (64-byte request, 64-byte answer, one connection, TCP_NODELAY)
    rr-k2i  kernel client -> ioth server (tap, MTU 1500)    rr-i2i  ioth -> ioth (switch)
    rr-i2i-vde  ioth -> ioth through Debian's vde_switch (the switch's share of rr-i2i)
    rr-kk   reference: kernel -> kernel over veth
  connections/s (connect, 64-byte request, 64-byte answer, close)
    cps-k2i / cps-i2i / cps-i2i-vde / cps-kk   as above
  scale
    conn10k  10,000 established connections between two stacks of one process (switch):
             set-up time and RSS growth per connection

The kernel ends of the bulk ioth cases and of rr/cps are this script's ``--worker`` mode with
plain kernel sockets run inside the namespace (``ip netns exec``); the ioth ends are the same
worker mode on an ioth stack (``ioth.sockets.socket``), each in its own process.  Everything that
touches the kernel network lives in namespaces created here and deleted afterwards, with
addresses from 198.18.0.0/15; processes are stopped by pid.

    python benchmarks/bench_tcp.py [--quick] [--json] [--only sw1500,rr-k2i] [--seconds S]

Quoted, not measured (not installable here): LWIPv6 through vde_switch 0.20 Gbit/s and 4,700
round trips/s.  Targets: >= 0.5 Gbit/s kernel<->ioth at MTU 1500, >= 2 Gbit/s with large MTU or
offload, >= 5,000 round trips/s, >= 2,000 connections/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import timeline

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
PORT = 5201
CHUNK = 256 * 1024
MSG = 64
LWIP_GBPS = 0.20
LWIP_RR = 4700.0
ALL = ("veth,veth65520,vde,sw1500,sw65520,k2i1500,k2i65520,k2ioff,i2k1500,i2k65520,i2koff,"
       "k2i-iperf,i2k-iperf,k2i-iperf-off,rr-kk,rr-k2i,rr-i2i,rr-i2i-vde,cps-kk,cps-k2i,cps-i2i,"
       "cps-i2i-vde,conn10k,sockconns")


# ----------------------------------------------------------------------------------------------
# worker mode: one end of a test, in its own process (ioth stack or kernel sockets)
# ----------------------------------------------------------------------------------------------
def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise ConnectionError("EOF")
        buf += d
    return buf


def _whatif_nocsum() -> None:
    """What-if experiment (BENCH_TCP_WHATIF=nocsum): received TCP segments are not checksum-
    verified (an upper bound for trusting offload taps / AF_UNIX links); same checks otherwise."""
    import ioth.wire.tcp as wt
    from ioth.wire.errors import TruncatedError
    unpack, hl, mask = wt._unpack, wt.HEADER_LEN, wt.FLAGS_MASK

    def parse_fast(buf: Any, src: bytes, dst: bytes) -> tuple[int, int, int, int, int, int, int]:
        n = len(buf)
        if n < hl:
            raise TruncatedError("short TCP segment")
        sport, dport, seq, ack, off_flags, window, _, _ = unpack(buf)
        hlen = (off_flags >> 12) << 2
        if hlen < hl or hlen > n:
            raise TruncatedError("bad TCP data offset")
        return sport, dport, seq, ack, off_flags & mask, window, hlen

    wt.parse_fast = parse_fast


# iperf3 control protocol (enough of it for one TCP stream against the real iperf3)
IPERF_TEST_START, IPERF_TEST_RUNNING, IPERF_TEST_END = 1, 2, 4
IPERF_PARAM_EXCHANGE, IPERF_CREATE_STREAMS = 9, 10
IPERF_EXCHANGE_RESULTS, IPERF_DISPLAY_RESULTS, IPERF_DONE = 13, 14, 16
IPERF_COOKIE = 37


def _send_json(s: socket.socket, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    s.sendall(len(data).to_bytes(4, "big") + data)


def _recv_json(s: socket.socket) -> dict[str, Any]:
    n = int.from_bytes(_recv_exact(s, 4), "big")
    out: dict[str, Any] = json.loads(_recv_exact(s, n))
    return out


def _iperf_results(nbytes: int, seconds: float, sender: bool) -> dict[str, Any]:
    return {"cpu_util_total": 0.0, "cpu_util_user": 0.0, "cpu_util_system": 0.0,
            "sender_has_retransmits": 0 if sender else -1,
            "streams": [{"id": 1, "bytes": nbytes, "retransmits": -1, "jitter": 0,
                         "errors": 0, "omitted_errors": 0, "packets": 0,
                         "omitted_packets": 0, "start_time": 0, "end_time": seconds}]}


def iperf3_server(srv: socket.socket) -> dict[str, Any]:
    """Serve one ``iperf3 -c`` TCP test on listening socket ``srv``; bytes and seconds
    counted between TEST_RUNNING and the client's TEST_END."""
    ctrl, _ = srv.accept()
    _recv_exact(ctrl, IPERF_COOKIE)
    ctrl.sendall(bytes([IPERF_PARAM_EXCHANGE]))
    params = _recv_json(ctrl)
    if params.get("parallel", 1) != 1 or not params.get("tcp", True) or params.get("reverse"):
        raise RuntimeError(f"only one forward TCP stream is supported: {params}")
    ctrl.sendall(bytes([IPERF_CREATE_STREAMS]))
    data, _ = srv.accept()
    _recv_exact(data, IPERF_COOKIE)
    total = [0]
    stop = threading.Event()

    def reader() -> None:
        buf = memoryview(bytearray(CHUNK))
        data.settimeout(0.2)
        while not stop.is_set():
            try:
                n = data.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                break
            if not n:
                break
            total[0] += n

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    ctrl.sendall(bytes([IPERF_TEST_START, IPERF_TEST_RUNNING]))
    t0 = time.perf_counter()
    state = _recv_exact(ctrl, 1)[0]
    seconds = time.perf_counter() - t0
    got = total[0]
    if state != IPERF_TEST_END:
        raise RuntimeError(f"iperf3 client sent state {state}, expected TEST_END")
    ctrl.sendall(bytes([IPERF_EXCHANGE_RESULTS]))
    client = _recv_json(ctrl)
    _send_json(ctrl, _iperf_results(got, seconds, sender=False))
    ctrl.sendall(bytes([IPERF_DISPLAY_RESULTS]))
    with contextlib.suppress(ConnectionError, OSError):
        _recv_exact(ctrl, 1)  # IPERF_DONE
    stop.set()
    t.join(5)
    data.close()
    ctrl.close()
    sent = sum(int(st.get("bytes", 0)) for st in client.get("streams", []))
    return {"bytes": got, "seconds": seconds, "peer_sent": sent}


def iperf3_client(mk: Callable[[], socket.socket], dst: tuple[str, int], seconds: float
                  ) -> dict[str, Any]:
    """Run one TCP test against ``iperf3 -s`` at ``dst``; bytes the server counted."""
    ctrl = mk()
    ctrl.connect(dst)
    cookie = secrets.token_hex(18).encode() + b"\0"
    ctrl.sendall(cookie)
    data: socket.socket | None = None
    sent = 0
    elapsed = 0.0
    server: dict[str, Any] = {}
    while True:
        state = int.from_bytes(_recv_exact(ctrl, 1), "big", signed=True)
        if state == IPERF_PARAM_EXCHANGE:
            _send_json(ctrl, {"tcp": True, "omit": 0, "time": int(max(1, seconds)), "num": 0,
                              "blockcount": 0, "parallel": 1, "len": CHUNK,
                              "pacing_timer": 1000, "client_version": "3.12"})
        elif state == IPERF_CREATE_STREAMS:
            data = mk()
            data.connect(dst)
            data.sendall(cookie)
        elif state == IPERF_TEST_START:
            pass
        elif state == IPERF_TEST_RUNNING:
            assert data is not None
            payload = memoryview(b"\xa5" * CHUNK)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                data.sendall(payload)
                sent += CHUNK
            elapsed = time.perf_counter() - t0
            ctrl.sendall(bytes([IPERF_TEST_END]))
        elif state == IPERF_EXCHANGE_RESULTS:
            _send_json(ctrl, _iperf_results(sent, elapsed, sender=True))
            server = _recv_json(ctrl)
        elif state == IPERF_DISPLAY_RESULTS:
            ctrl.sendall(bytes([IPERF_DONE]))
            break
        else:
            raise RuntimeError(f"iperf3 server sent state {state}")
    got = sum(int(st.get("bytes", 0)) for st in server.get("streams", []))
    if data is not None:
        data.close()
    ctrl.close()
    return {"bytes": sent, "seconds": elapsed, "peer_received": got}


def _tcpinfo(stack: Any) -> dict[str, Any]:
    """The busiest TCP connection's figures and the plugs' counters of an ioth stack."""
    out: dict[str, Any] = {}
    with stack.lock:
        layer = stack.core.tcp
        infos = layer.info() if layer is not None else []
        plugs = list(stack.runtime.plugs.values())
    if infos:
        i = max(infos, key=lambda x: x.segments_in + x.segments_out)
        out = {k: getattr(i, k) for k in (
            "mss", "cwnd", "ssthresh", "srtt", "snd_wscale", "rcv_wscale", "sack", "timestamps",
            "retransmissions", "rto_expirations", "fast_recoveries", "segments_in",
            "segments_out", "dropped")}
        for k in ("tail_probes", "dsacks", "spurious_probes", "spurious_retrans", "undos"):
            out[k] = getattr(i, k, 0)
    for pl in plugs:
        c = pl.counters
        out["plug"] = {"tx": c.tx_frames, "rx": c.rx_frames, "tx_dropped": c.tx_dropped,
                       "rx_dropped": c.rx_dropped, "rx_errors": c.rx_errors}
    return out


def worker(args: argparse.Namespace) -> int:
    """Run one end: sink, source, rr-server, rr-client, cps-server, cps-client."""
    stack: Any = None
    family = socket.AF_INET
    if args.vnl:
        sys.path.insert(0, SRC)
        import importlib

        import ioth
        from ioth.sockets import socket as isocket
        for tweak in os.environ.get("BENCH_TCP_TWEAK", "").split():
            # experiments without editing src/: MODULE:ATTR=INT (ioth.stack.runtime:RECV_BATCH=8)
            mod, _, rest = tweak.partition(":")
            attr, _, val = rest.partition("=")
            module = importlib.import_module(mod)
            if not hasattr(module, attr):  # (a knob that moved: say so, do not add it)
                raise SystemExit(f"BENCH_TCP_TWEAK: {mod} has no {attr}")
            setattr(module, attr, int(val))
        if "nocsum" in os.environ.get("BENCH_TCP_WHATIF", "").split():
            _whatif_nocsum()
        stack = ioth.Stack(args.vnl, args.config)

        def mk() -> socket.socket:
            s: socket.socket = isocket(stack, family, socket.SOCK_STREAM)
            return s
    else:
        def mk() -> socket.socket:
            return socket.socket(family, socket.SOCK_STREAM)
    prof = None
    if args.profile:
        import cProfile
        prof = cProfile.Profile()
    role = args.role
    result: dict[str, Any] = {"role": role}
    cpu0 = 0.0
    try:
        if role.endswith("server") or role == "sink":
            srv = mk()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((args.addr, args.port))
            srv.listen(128)
            cpu0 = _cpu()  # imports and stack set-up are not counted
            _emit({"ready": True})
            if prof:
                prof.enable()
            if role == "sink":
                conn, _ = srv.accept()
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                n = conn.recv_into(view)
                t0 = time.perf_counter()
                total = 0
                while True:
                    got = conn.recv_into(view)
                    if not got:
                        break
                    total += got
                result.update(bytes=total, seconds=time.perf_counter() - t0, first=n)
                if stack is not None:
                    result["tcp"] = _tcpinfo(stack)
                conn.close()
            elif role == "rr-server":
                conn, _ = srv.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                n = 0
                while True:
                    try:
                        d = _recv_exact(conn, MSG)
                    except ConnectionError:
                        break
                    conn.sendall(d)
                    n += 1
                result.update(count=n)
                conn.close()
            elif role == "iperf-server":
                result.update(iperf3_server(srv))
            else:  # cps-server
                n = 0
                while True:
                    conn, _ = srv.accept()
                    try:
                        d = _recv_exact(conn, MSG)
                    except ConnectionError:
                        conn.close()
                        break
                    conn.sendall(d)
                    conn.close()
                    n += 1
                    if d[:4] == b"STOP":
                        break
                result.update(count=n)
            srv.close()
        else:
            cpu0 = _cpu()  # imports and stack set-up are not counted
            _emit({"ready": True})
            line = sys.stdin.readline()  # "go" from the driver once the far end is reachable
            if not line:
                return 1
            dst = (args.addr, args.port)
            if prof:
                prof.enable()
            if role == "source":
                s = mk()
                s.connect(dst)
                data = memoryview(b"\xa5" * CHUNK)
                t0 = time.perf_counter()
                total = 0
                while time.perf_counter() - t0 < args.seconds:
                    s.sendall(data)
                    total += CHUNK
                if stack is not None:  # (before the close: then the stack lists TIME-WAIT only)
                    result["tcp"] = _tcpinfo(stack)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)
                s.close()
                result.update(bytes=total, seconds=time.perf_counter() - t0)
            elif role == "rr-client":
                s = mk()
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.connect(dst)
                msg = b"q" * MSG
                n = 0
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    s.sendall(msg)
                    _recv_exact(s, MSG)
                    n += 1
                result.update(count=n, seconds=time.perf_counter() - t0)
                s.close()
            elif role == "iperf-client":
                result.update(iperf3_client(mk, dst, args.seconds))
            else:  # cps-client
                msg = b"c" * MSG
                n = 0
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    s = mk()
                    s.connect(dst)
                    s.sendall(msg)
                    _recv_exact(s, MSG)
                    s.close()
                    n += 1
                el = time.perf_counter() - t0
                s = mk()
                s.connect(dst)
                s.sendall(b"STOP" + b"x" * (MSG - 4))
                with contextlib.suppress(ConnectionError, OSError):
                    _recv_exact(s, MSG)
                s.close()
                result.update(count=n, seconds=el)
    finally:
        result["cpu"] = _cpu() - cpu0
        if prof:
            prof.disable()
            prof.dump_stats(args.profile)
        if stack is not None:
            time.sleep(0.2)  # let the last FIN/ACKs leave
            stack.close()
    _emit(result)
    return 0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


# ----------------------------------------------------------------------------------------------
# driver helpers
# ----------------------------------------------------------------------------------------------
def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output."""
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True,
                          timeout=timeout)


def nsexec(ns: str | None, *cmd: str) -> list[str]:
    """argv running ``cmd`` inside namespace ``ns`` (None: here)."""
    return ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)


class Procs:
    """Processes started by the driver; stopped by pid (whole session) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], stdin: bool = False) -> subprocess.Popen[str]:
        """Start ``argv`` in its own session, stdout piped."""
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                text=True, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """SIGTERM then SIGKILL each started process group, by pid."""
        for proc in self.procs:
            if proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@contextlib.contextmanager
def procs() -> Iterator[Procs]:
    """A process set stopped on exit."""
    p = Procs()
    try:
        yield p
    finally:
        p.stop_all()


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    """``count`` fresh namespaces with loopback up, deleted afterwards."""
    names = [f"btcp-{secrets.token_hex(4)}" for _ in range(count)]
    try:
        for name in names:
            sh("ip", "netns", "add", name)
            sh(*nsexec(name, "ip", "link", "set", "lo", "up"))
        yield names
    finally:
        for name in names:
            sh("ip", "netns", "delete", name, check=False)


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Poll ``pred`` until true or raise."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_json(proc: subprocess.Popen[str], what: str, timeout: float) -> dict[str, Any]:
    """Next JSON line on ``proc``'s stdout (raise with its stderr if it exits or times out)."""
    assert proc.stdout is not None
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()  # type: ignore
                                                   ), daemon=True)
    t.start()
    t.join(timeout)
    if not box or not box[0]:
        err = ""
        if proc.poll() is not None and proc.stderr is not None:
            err = proc.stderr.read()[-2000:]
        raise RuntimeError(f"{what}: no answer within {timeout:g}s "
                           f"(exit={proc.poll()}) {err.strip()}")
    out: dict[str, Any] = json.loads(box[0])
    return out


def worker_argv(ns: str | None, role: str, addr: str, seconds: float,
                vnl: str | None = None, config: str = "", profile: str | None = None,
                port: int = PORT) -> list[str]:
    """argv of a worker process (kernel sockets in ``ns`` when ``vnl`` is None)."""
    argv = [sys.executable, os.path.abspath(__file__), "--worker", role, "--addr", addr,
            "--port", str(port), "--seconds", str(seconds)]
    if vnl:
        argv += ["--vnl", vnl, "--config", config]
    if profile:
        argv += ["--profile", profile]
    return nsexec(ns, *argv)


def go(proc: subprocess.Popen[str]) -> None:
    """Tell a client worker to start."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def link_exists(ns: str, ifname: str) -> bool:
    """``ifname`` exists in ``ns``."""
    return sh(*nsexec(ns, "ip", "link", "show", ifname), check=False).returncode == 0


def ifconfig(ns: str, ifname: str, addr: str, mtu: int | None = None) -> None:
    """Address, MTU and up for ``ifname`` in ``ns``."""
    sh(*nsexec(ns, "ip", "addr", "add", f"{addr}/24", "dev", ifname))
    if mtu:
        sh(*nsexec(ns, "ip", "link", "set", ifname, "mtu", str(mtu)))
    sh(*nsexec(ns, "ip", "link", "set", ifname, "up"))


@dataclass
class Result:
    """One measured case."""

    key: str
    name: str
    unit: str
    value: float
    ref: str = ""          # key of the in-run reference for the ratio
    target: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU s per wall s
    note: str = ""
    error: str = ""


TRACE: dict[str, Any] = {"pyspy": None, "strace": None, "perf": None, "timeline": None,
                         "seconds": 1.0, "pending": []}
PERF_EVENTS = ("raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_read,"
               "syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,"
               "syscalls:sys_enter_epoll_wait,context-switches,task-clock")


def attach(p: Procs, targets: dict[str, subprocess.Popen[str]], label: str) -> None:
    """With ``--pyspy PREFIX`` / ``--strace PREFIX``: sample / count syscalls of the ioth
    workers ``targets`` (role -> process) while the measurement runs (started after "go")."""
    dur = max(1, int(TRACE["seconds"]))
    for role, proc in targets.items():
        if TRACE["pyspy"]:
            out = f"{TRACE['pyspy']}.{label}.{role}.txt"
            p.start(["py-spy", "record", "--pid", str(proc.pid), "--duration", str(dur),
                     "--rate", "250", "--format", "raw", "--threads", "--nonblocking",
                     "-o", out])
        if TRACE["perf"]:
            out = f"{TRACE['perf']}.{label}.{role}.perf"
            p.start(["perf", "stat", "-x,", "-o", out, "-e", PERF_EVENTS, "-p", str(proc.pid),
                     "--", "sleep", str(dur)])
        if TRACE["strace"]:
            out = f"{TRACE['strace']}.{label}.{role}.strace"
            p.start(["timeout", "-s", "INT", str(dur), "strace", "-c", "-f", "-o", out,
                     "-p", str(proc.pid)])
    kind = next((k for k in ("cps", "rr") if f"-{k}-" in label), None)
    if TRACE["timeline"] and kind:
        # 0.4 s of scheduler and sendto/recvfrom events, 1 s into the measurement
        out = f"{TRACE['timeline']}.{label}.perf"
        p.start(["sh", "-c", "sleep 1 && exec " + shlex.join(timeline.record_argv(out, 0.4))])
        ids = {proc.pid: role for role, proc in targets.items()}
        for pid, role in list(ids.items()):  # the threads too (see timeline.parse)
            with contextlib.suppress(OSError):
                ids.update((int(tid), role) for tid in os.listdir(f"/proc/{pid}/task"))
        TRACE["pending"].append((out, ids, kind))


def run_pair(p: Procs, server: list[str], client: list[str], timeout: float,
             label: str = "", trace: str = "",
             extra: dict[str, subprocess.Popen[str]] | None = None
             ) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Start a server worker, then a client worker; (server result, client result, wall).
    ``trace``: which of them to profile (``server``, ``client``, ``both``)."""
    srv = p.start(server)
    read_json(srv, "server ready", 30)
    cli = p.start(client, stdin=True)
    read_json(cli, "client ready", 30)
    t0 = time.monotonic()
    go(cli)
    targets = {"server": srv, "client": cli}
    chosen = {k: v for k, v in targets.items() if trace in (k, "both")}
    attach(p, {**chosen, **(extra or {})}, label)
    cres = read_json(cli, "client", timeout)
    sres = read_json(srv, "server", 15)
    return sres, cres, time.monotonic() - t0


# ----------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------
A1, A2 = "198.18.7.1", "198.18.7.2"


def pid_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def ioth_switch(p: Procs, c_switch: bool = False
                ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """An ``ioth switch`` (Debian's ``vde_switch`` with ``c_switch``) in a scratch directory;
    yields (directory, process)."""
    with tempfile.TemporaryDirectory(prefix="btcp-") as tmp:
        d = os.path.join(tmp, "sw")
        if c_switch:
            sw = p.start(["vde_switch", "-s", d], stdin=True)  # exits on console EOF
        elif os.environ.get("BENCH_TCP_SWITCH") == "bare":  # the floor of a Python switch
            sw = p.start([sys.executable, os.path.join(HERE, "bare_wire.py"), d])
        else:
            sw = p.start([sys.executable, "-m", "ioth.cli.main", "switch", d])
        wait_until(lambda: os.path.exists(os.path.join(d, "ctl")) or sw.poll() is not None,
                   "ioth switch")
        if sw.poll() is not None:
            raise RuntimeError(f"ioth switch exited: {sw.stderr.read() if sw.stderr else ''}")
        yield d, sw


def kind_roles(kind: str) -> tuple[str, str]:
    """(server role, client role) of a measurement kind."""
    return {"bulk": ("sink", "source"), "rr": ("rr-server", "rr-client"),
            "cps": ("cps-server", "cps-client")}[kind]


def value_of(kind: str, sres: dict[str, Any], cres: dict[str, Any]) -> float:
    """Gbit/s for bulk (receiver's count), per second otherwise (client's count)."""
    if kind == "bulk":
        if "first" in sres and "bytes" in cres and sres["bytes"] + sres["first"] != cres["bytes"]:
            raise RuntimeError(f"receiver got {sres['bytes'] + sres['first']} bytes, sender sent "
                               f"{cres['bytes']}")
        return float(sres["bytes"]) * 8 / float(sres["seconds"]) / 1e9
    return float(cres["count"]) / float(cres["seconds"])


def cpu_of(sres: dict[str, Any], cres: dict[str, Any], wall: float) -> dict[str, float]:
    """CPU per wall second of both workers."""
    return {"server": sres.get("cpu", 0.0) / wall, "client": cres.get("cpu", 0.0) / wall}


def case_switch(kind: str, mtu: int, seconds: float, profile: str | None = None,
                c_switch: bool = False) -> tuple[float, dict[str, float], str]:
    """ioth -> ioth through an ioth switch (Debian's vde_switch with ``c_switch``), two
    processes."""
    srole, crole = kind_roles(kind)
    with procs() as p, ioth_switch(p, c_switch) as (d, sw):
        opt = f"[mtu={mtu}]" if mtu != 1500 else ""
        server = worker_argv(None, srole, A2, seconds, f"vde://{d}{opt}",
                             f"eth,ip={A2}/24", profile=profile and profile + ".server")
        client = worker_argv(None, crole, A2, seconds, f"vde://{d}{opt}",
                             f"eth,ip={A1}/24", profile=profile and profile + ".client")
        sw0 = pid_cpu(sw.pid)
        sres, cres, wall = run_pair(p, server, client, seconds * 4 + 30,
                                    f"sw-{kind}-{mtu}{'-vde' if c_switch else ''}", "both",
                                    {"switch": sw})
        cpu = cpu_of(sres, cres, wall)
        cpu["switch"] = (pid_cpu(sw.pid) - sw0) / wall
        return value_of(kind, sres, cres), cpu, tcp_note(sres, cres)


def case_tap(kind: str, direction: str, mtu: int, offload: bool, seconds: float,
             profile: str | None = None, ioth_mtu: int | None = None
             ) -> tuple[float, dict[str, float], str]:
    """kernel <-> ioth through a TAP whose kernel end is in a fresh namespace.

    ``direction``: ``k2i`` (kernel client/sender, ioth server/receiver) or ``i2k``.
    ``ioth_mtu``: MTU of the ioth interface when it differs from the link's (with ``offload``
    the plug takes 64 KiB frames: TCP then builds super-segments that the kernel splits)."""
    srole, crole = kind_roles(kind)
    with namespaces(1) as (ns,), procs() as p:
        tap = "bt" + secrets.token_hex(4)
        opts = ["netns=" + ns, "up"]
        if mtu != 1500:
            opts.append(f"mtu={mtu}")
        if offload:
            opts.append("offload")
        vnl = f"tap://{tap}[{'/'.join(opts)}]"
        cfg = f"eth,ip={A2}/24" + (f",mtu={ioth_mtu}" if ioth_mtu else "")
        prof_s = profile and profile + ".server"
        prof_c = profile and profile + ".client"
        if direction == "k2i":
            server = worker_argv(None, srole, A2, seconds, vnl, cfg, profile=prof_s)
            client = worker_argv(ns, crole, A2, seconds)
            srv = p.start(server)
            read_json(srv, "ioth server ready", 30)
            wait_until(lambda: link_exists(ns, tap), "tap")
            ifconfig(ns, tap, A1, mtu if mtu != 1500 else None)
            cli = p.start(client, stdin=True)
            read_json(cli, "kernel client ready", 30)
        else:
            server = worker_argv(ns, srole, A1, seconds)
            # the ioth client needs its tap before the kernel can have the address
            client = worker_argv(None, crole, A1, seconds, vnl, cfg, profile=prof_c)
            cli = p.start(client, stdin=True)
            read_json(cli, "ioth client ready", 30)
            wait_until(lambda: link_exists(ns, tap) or cli.poll() is not None, "tap")
            ifconfig(ns, tap, A1, mtu if mtu != 1500 else None)
            srv = p.start(server)
            read_json(srv, "kernel server ready", 30)
        t0 = time.monotonic()
        go(cli)
        label = f"tap-{kind}-{direction}-{mtu}{'-off' if offload else ''}"
        attach(p, {"server": srv} if direction == "k2i" else {"client": cli}, label)
        cres = read_json(cli, "client", seconds * 4 + 30)
        sres = read_json(srv, "server", 15)
        wall = time.monotonic() - t0
        note = tcp_note(sres, cres)
        if kind == "bulk":
            note += "; kernel: " + kernel_counters(ns)
        return value_of(kind, sres, cres), cpu_of(sres, cres, wall), note


KERNEL_COUNTERS = ("TcpRetransSegs", "TcpExtTCPOFOQueue", "TcpExtTCPOFODrop",
                   "TcpExtTCPRcvQDrop", "TcpExtTCPBacklogDrop", "TcpExtTCPDSACKRecv",
                   "TcpExtTCPDSACKOldSent", "TcpExtTCPSACKReorder", "TcpInErrs", "TcpInCsumErrors")


def kernel_counters(ns: str) -> str:
    """Non-zero TCP counters of the namespace's kernel stack (nstat), for the notes."""
    if shutil.which("nstat") is None:
        return "(no nstat)"
    out = sh(*nsexec(ns, "nstat", "-az", *KERNEL_COUNTERS), check=False).stdout
    vals = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in KERNEL_COUNTERS and f[1] != "0":
            vals.append(f"{f[0].removeprefix('TcpExt')} {f[1]}")
    return ", ".join(vals) or "no retransmissions, drops or out-of-order"


def tcp_note(sres: dict[str, Any], cres: dict[str, Any]) -> str:
    """Short TCP figures of the ioth end(s) of a bulk case (sender and receiver)."""
    parts = []
    for who, r in (("rx", sres), ("tx", cres)):
        t = r.get("tcp")
        if not t or "mss" not in t:
            continue
        srtt = f"{t['srtt'] * 1e3:.2f}ms" if t.get("srtt") else "-"
        pl = t.get("plug", {})
        parts.append(f"ioth {who}: mss {t['mss']} cwnd {t['cwnd']} srtt {srtt} "
                     f"segs in/out {t['segments_in']}/{t['segments_out']} "
                     f"retrans {t['retransmissions']} rto {t['rto_expirations']} "
                     f"fr {t['fast_recoveries']} tlp {t.get('tail_probes', 0)} "
                     f"dsack {t.get('dsacks', 0)} undo {t.get('undos', 0)} "
                     f"plug tx_dropped {pl.get('tx_dropped', 0)}")
    return "; ".join(parts)


def case_tap_iperf(direction: str, mtu: int, offload: bool, seconds: float
                   ) -> tuple[float, dict[str, float], str]:
    """Kernel ``iperf3 -c`` -> ioth (iperf3 protocol server) or ioth -> kernel ``iperf3 -s``
    through a TAP; Gbit/s counted by the receiver."""
    with namespaces(1) as (ns,), procs() as p:
        tap = "bt" + secrets.token_hex(4)
        opts = ["netns=" + ns, "up"] + ([f"mtu={mtu}"] if mtu != 1500 else []) + (
            ["offload"] if offload else [])
        vnl = f"tap://{tap}[{'/'.join(opts)}]"
        cfg = f"eth,ip={A2}/24"
        port = 20000 + secrets.randbelow(20000)
        if direction == "k2i":
            srv = p.start(worker_argv(None, "iperf-server", A2, seconds, vnl, cfg, port=port))
            read_json(srv, "ioth iperf3 server ready", 30)
            wait_until(lambda: link_exists(ns, tap), "tap")
            ifconfig(ns, tap, A1, mtu if mtu != 1500 else None)
            c0 = pid_cpu(srv.pid)
            t0 = time.monotonic()
            out = sh(*nsexec(ns, "iperf3", "-c", A2, "-p", str(port), "-t",
                             str(max(1, round(seconds))), "-J"), check=False, timeout=seconds + 30)
            wall = time.monotonic() - t0
            cpu = {"server": (pid_cpu(srv.pid) - c0) / wall}
            res = read_json(srv, "ioth iperf3 server", 15)
            report = json.loads(out.stdout)
            if "error" in report:
                raise RuntimeError(f"iperf3 -c: {report['error']}")
            sent = int(report["end"]["sum_sent"]["bytes"])
            gbps = res["bytes"] * 8 / res["seconds"] / 1e9
            said = float(report["end"]["sum_sent"]["bits_per_second"]) / 1e9
            note = (f"kernel iperf3 -c sent {sent:,} B ({said:.3f} Gbit/s by its clock), ioth "
                    f"counted {res['bytes']:,} B until TEST_END")
            return gbps, cpu, note
        cli = p.start(worker_argv(None, "iperf-client", A1, seconds, vnl, cfg, port=port),
                      stdin=True)
        read_json(cli, "ioth iperf3 client ready", 30)
        wait_until(lambda: link_exists(ns, tap), "tap")
        ifconfig(ns, tap, A1, mtu if mtu != 1500 else None)
        p.start(nsexec(ns, "iperf3", "-s", "-1", "-B", A1, "-p", str(port)))
        wait_until(lambda: f":{port}" in sh(*nsexec(ns, "ss", "-ltnH")).stdout, "iperf3 -s")
        t0 = time.monotonic()
        go(cli)
        res = read_json(cli, "ioth iperf3 client", seconds * 4 + 30)
        wall = time.monotonic() - t0
        gbps = res["peer_received"] * 8 / res["seconds"] / 1e9
        note = (f"ioth sent {res['bytes']:,} B, kernel iperf3 -s received "
                f"{res['peer_received']:,} B")
        return gbps, {"client": res.get("cpu", 0.0) / wall}, note


def iperf3(p: Procs, ns_s: str, ns_c: str, addr: str, seconds: float) -> float:
    """Kernel iperf3 TCP test from ``ns_c`` to ``addr`` in ``ns_s``; Gbit/s received."""
    port = str(20000 + secrets.randbelow(20000))
    p.start(nsexec(ns_s, "iperf3", "-s", "-1", "-B", addr, "-p", port))
    wait_until(lambda: f":{port}" in sh(*nsexec(ns_s, "ss", "-ltnH")).stdout, "iperf3 -s")
    out = sh(*nsexec(ns_c, "iperf3", "-c", addr, "-p", port, "-t", str(max(1, round(seconds))),
                     "-J"),
             check=False, timeout=seconds + 30)
    report = json.loads(out.stdout)
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


@contextlib.contextmanager
def veth_pair(mtu: int | None = None) -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair (A1 in the first, A2 in the second)."""
    with namespaces(2) as (na, nb):
        va, vb = "va" + secrets.token_hex(4), "vb" + secrets.token_hex(4)
        sh(*nsexec(na, "ip", "link", "add", va, "type", "veth", "peer", "name", vb,
                   "netns", nb))
        ifconfig(na, va, A1, mtu)
        ifconfig(nb, vb, A2, mtu)
        yield na, nb


def case_veth(kind: str, mtu: int, seconds: float) -> tuple[float, dict[str, float], str]:
    """Kernel <-> kernel over veth (iperf3 for bulk, the kernel workers otherwise)."""
    with veth_pair(mtu if mtu != 1500 else None) as (na, nb), procs() as p:
        if kind == "bulk":
            return iperf3(p, nb, na, A2, seconds), {}, "iperf3"
        srole, crole = kind_roles(kind)
        sres, cres, wall = run_pair(p, worker_argv(nb, srole, A2, seconds),
                                    worker_argv(na, crole, A2, seconds), seconds * 4 + 30)
        return value_of(kind, sres, cres), cpu_of(sres, cres, wall), "python kernel sockets"


def case_vde(seconds: float) -> tuple[float, dict[str, float], str]:
    """Kernel iperf3 through Debian's vde_switch and two vde_plug taps."""
    with namespaces(2) as (na, nb), procs() as p, \
            tempfile.TemporaryDirectory(prefix="btcp-") as tmp:
        d = os.path.join(tmp, "sw")
        sw = p.start(["vde_switch", "-s", d], stdin=True)  # it exits on EOF of its console
        wait_until(lambda: os.path.exists(os.path.join(d, "ctl")) or sw.poll() is not None,
                   "vde_switch")
        ta, tb = "da" + secrets.token_hex(4), "db" + secrets.token_hex(4)
        p.start(nsexec(na, "vde_plug", f"vde://{d}", f"tap://{ta}"), stdin=True)
        p.start(nsexec(nb, "vde_plug", f"vde://{d}", f"tap://{tb}"), stdin=True)
        wait_until(lambda: link_exists(na, ta) and link_exists(nb, tb), "vde_plug taps")
        ifconfig(na, ta, A1)
        ifconfig(nb, tb, A2)
        return iperf3(p, nb, na, A2, seconds), {}, "iperf3"


def case_conn10k(count: int) -> tuple[float, dict[str, float], str]:
    """``count`` established connections between two Stacks of this process joined by a switch.

    Driven through the stack's own TCP layer (``stack.core.tcp``): the ioth sockets need two
    descriptors per end, and ``count`` x 4 descriptors exceed this machine's hard limit; the
    socket-level cost is measured by :func:`case_sock_conns`.  Value: RSS growth per connection
    end (KiB); set-up time in the note."""
    import gc
    import ipaddress
    sys.path.insert(0, SRC)
    import ioth
    dst = ipaddress.IPv4Address(A2).packed
    with tempfile.TemporaryDirectory(prefix="btcp-") as tmp:
        a = ioth.Stack(f"switch://{tmp}/sw", f"eth,ip={A1}/24")
        b = ioth.Stack(f"vde://{tmp}/sw", f"eth,ip={A2}/24")
        try:
            la, lb = a.core.tcp, b.core.tcp
            assert la is not None and lb is not None
            la.max_connections = max(la.max_connections, count + 10)
            lb.max_connections = max(lb.max_connections, count + 10)
            with b.lock:
                lst = lb.listen(PORT, dst, backlog=count + 10)
            with a.lock:
                iface, nh = a.core.ip4.route(dst)
                src = a.core.ip4.source_for(iface, nh)

            def one_batch(n: int, out: list[Any], acc: list[Any]) -> None:
                with a.lock:
                    now = a.now()
                    for _ in range(n):
                        out.append(la.connect(src, dst, PORT, now))
                    a.runtime.flush()
                want = len(acc) + n
                deadline = time.monotonic() + 30
                while len(acc) < want:
                    with b.lock:
                        while (c := lst.accept()) is not None:
                            acc.append(c)
                    if len(acc) < want:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"only {len(acc)}/{want} accepted "
                                               f"(listener {lst!r})")
                        time.sleep(0.001)

            warm_c: list[Any] = []
            warm_s: list[Any] = []
            one_batch(1, warm_c, warm_s)  # ARP, lazily built tables
            gc.collect()
            rss0 = rss()
            clients: list[Any] = []
            servers: list[Any] = []
            t0 = time.perf_counter()
            while len(clients) < count:
                one_batch(min(100, count - len(clients)), clients, servers)
            setup = time.perf_counter() - t0
            deadline = time.monotonic() + 10
            while not all(str(c.state).endswith("ESTABLISHED") for c in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError("client ends not all ESTABLISHED")
                time.sleep(0.05)
            gc.collect()
            rss1 = rss()
            per = (rss1 - rss0) / (2 * count)
            with a.lock:
                est_a = sum(1 for c in la.connections.values()
                            if str(c.state).endswith("ESTABLISHED"))
            note = (f"stack TCP API, 2 Stacks + switch in 1 process: {est_a:,} established, "
                    f"set-up {setup:.2f} s = {count / setup:,.0f} conn/s; "
                    f"RSS +{(rss1 - rss0) / 2**20:.1f} MiB")
            return per / 1024, {}, note
        finally:
            a.close()
            b.close()


def case_sock_conns(count: int) -> tuple[float, dict[str, float], str]:
    """As many established ioth *socket* connections as the descriptor limit allows (<= count):
    RSS growth per socket end (KiB) and set-up rate (blocking connect + accept thread)."""
    import gc
    import resource
    sys.path.insert(0, SRC)
    import ioth
    from ioth.sockets import socket as isocket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    n = min(count, (soft - 500) // 4)  # two descriptors per socket end
    with tempfile.TemporaryDirectory(prefix="btcp-") as tmp:
        a = ioth.Stack(f"switch://{tmp}/sw", f"eth,ip={A1}/24")
        b = ioth.Stack(f"vde://{tmp}/sw", f"eth,ip={A2}/24")
        try:
            srv = isocket(b, socket.AF_INET, socket.SOCK_STREAM)
            srv.bind((A2, PORT))
            srv.listen(1024)
            w = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
            w.connect((A2, PORT))
            srv.accept()[0].close()
            w.close()
            time.sleep(0.3)
            gc.collect()
            rss0 = rss()
            accepted: list[socket.socket] = []
            err: list[BaseException] = []

            def acceptor() -> None:
                try:
                    while len(accepted) < n:
                        accepted.append(srv.accept()[0])
                except BaseException as e:
                    err.append(e)

            t = threading.Thread(target=acceptor, daemon=True)
            t.start()
            clients = []
            t0 = time.perf_counter()
            for _ in range(n):
                c = isocket(a, socket.AF_INET, socket.SOCK_STREAM)
                c.connect((A2, PORT))
                clients.append(c)
            t.join(120)
            setup = time.perf_counter() - t0
            if err or len(accepted) != n:
                raise RuntimeError(f"accepted {len(accepted)}/{n}: {err}")
            gc.collect()
            rss1 = rss()
            for i in range(0, n, max(1, n // 50)):  # a sample still carries data
                clients[i].sendall(b"x")
                if accepted[i].recv(1) != b"x":
                    raise RuntimeError("wrong data on an established connection")
            note = (f"{n:,} socket connections (descriptor limit {soft}), set-up {setup:.2f} s"
                    f" = {n / setup:,.0f} conn/s")
            for s in clients + accepted:
                s.close()
            srv.close()
            return (rss1 - rss0) / (2 * n) / 1024, {}, note
        finally:
            a.close()
            b.close()


def isolated(case: str, count: int) -> tuple[float, dict[str, float], str]:
    """Run memory case ``case`` in a fresh interpreter: in this one, memory the earlier cases
    freed would be reused and hide the growth being measured (sockconns read 0.5 KiB per
    end after the other cases, 3.8 KiB alone)."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memcase", case,
                          "--conns", str(count)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{case}: {out.stderr.strip().splitlines()[-1:]}")
    value, extra, note = json.loads(out.stdout.strip().splitlines()[-1])
    return float(value), dict(extra), str(note)


def rss() -> int:
    """Resident set size of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------------------------------------
CATEGORIES = (  # first match on the frame's file decides a sample's category (self time)
    ("checksum", ("checksum.py",)),
    ("tcp", ("ioth/stack/tcp/",)),
    ("sockets", ("ioth/sockets/",)),
    ("stack input/output", ("ioth/stack/", "ioth/wire/")),
    ("plug I/O", ("ioth/net/",)),
    ("engine", ("ioth/runtime/",)),
)


def summarize(path: str, top: int = 15) -> str:
    """Text summary of a py-spy raw (collapsed) profile: samples per thread, self time by
    category, top functions by self and by cumulative (inclusive) samples."""
    import collections
    self_t: collections.Counter[str] = collections.Counter()
    cum: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    cats: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue  # not a collapsed stack (e.g. a result line the worker printed)
            count = int(n)
            frames = stack.split(";")
            thread = frames[0].split(":", 1)[-1].strip()
            frames = [fr.rsplit(":", 1)[0] + ")" if fr.endswith(")") and ":" in fr else fr
                      for fr in frames[1:]]  # per function, not per line
            total += count
            threads[thread] += count
            if not frames:
                continue
            leaf = frames[-1]
            self_t[leaf] += count
            for fr in set(frames):
                cum[fr] += count
            fname = leaf.rpartition("(")[2]
            cat = "python/stdlib (not ioth)"
            for c, pats in CATEGORIES:
                if any(pt in fname for pt in pats):
                    cat = c
                    break
            cats[cat] += count
    out = [f"{path}: {total} samples"]
    out.append("  threads: " + ", ".join(f"{t} {c / total:.0%}" for t, c in threads.items()))
    out.append("  self by category: " + ", ".join(f"{c} {n / total:.0%}"
                                                  for c, n in cats.most_common()))
    out.append("  top self:")
    out += [f"    {n / total:6.1%}  {fr}" for fr, n in self_t.most_common(top)]
    out.append("  top cumulative:")
    out += [f"    {n / total:6.1%}  {fr}" for fr, n in cum.most_common(top + 10)]
    return "\n".join(out)


def build_cases(seconds: float, rr_seconds: float, count: int, profile: str | None
                ) -> dict[str, Callable[[], Result]]:
    """Every case key -> a function that measures it."""
    def mk(key: str, name: str, unit: str, fn: Callable[[], tuple[float, dict[str, float],
                                                                   str]],
           ref: str = "", target: float | None = None) -> Callable[[], Result]:
        def run() -> Result:
            try:
                v, cpu, note = fn()
                return Result(key, name, unit, v, ref, target, cpu, note)
            except Exception as e:
                return Result(key, name, unit, 0.0, ref, target, {}, "",
                              f"{type(e).__name__}: {e}")
        return run

    s, r = seconds, rr_seconds
    prof = profile
    return {
        "veth": mk("veth", "kernel->kernel veth 1500 (iperf3)", "Gbit/s",
                   lambda: case_veth("bulk", 1500, s)),
        "veth65520": mk("veth65520", "kernel->kernel veth 65520 (iperf3)", "Gbit/s",
                        lambda: case_veth("bulk", 65520, s)),
        "vde": mk("vde", "kernel->kernel vde_switch+vde_plug taps (iperf3)", "Gbit/s",
                  lambda: case_vde(s)),
        "sw1500": mk("sw1500", "ioth->ioth ioth switch mtu 1500", "Gbit/s",
                     lambda: case_switch("bulk", 1500, s, prof), "vde"),
        "sw65520": mk("sw65520", "ioth->ioth ioth switch mtu 65520", "Gbit/s",
                      lambda: case_switch("bulk", 65520, s, prof), "vde"),
        "k2i1500": mk("k2i1500", "kernel->ioth tap mtu 1500", "Gbit/s",
                      lambda: case_tap("bulk", "k2i", 1500, False, s, prof), "vde", 0.5),
        "k2i65520": mk("k2i65520", "kernel->ioth tap mtu 65520", "Gbit/s",
                       lambda: case_tap("bulk", "k2i", 65520, False, s, prof), "vde", 2.0),
        "k2ioff": mk("k2ioff", "kernel->ioth tap offload", "Gbit/s",
                     lambda: case_tap("bulk", "k2i", 1500, True, s, prof), "vde", 2.0),
        "i2k1500": mk("i2k1500", "ioth->kernel tap mtu 1500", "Gbit/s",
                      lambda: case_tap("bulk", "i2k", 1500, False, s, prof), "vde", 0.5),
        "i2k65520": mk("i2k65520", "ioth->kernel tap mtu 65520", "Gbit/s",
                       lambda: case_tap("bulk", "i2k", 65520, False, s, prof), "vde", 2.0),
        "i2koff": mk("i2koff", "ioth->kernel tap offload", "Gbit/s",
                     lambda: case_tap("bulk", "i2k", 1500, True, s, prof), "vde", 2.0),
        "k2i-iperf": mk("k2i-iperf", "kernel iperf3 -c -> ioth tap mtu 1500", "Gbit/s",
                        lambda: case_tap_iperf("k2i", 1500, False, s), "vde", 0.5),
        "i2k-iperf": mk("i2k-iperf", "ioth -> kernel iperf3 -s tap mtu 1500", "Gbit/s",
                        lambda: case_tap_iperf("i2k", 1500, False, s), "vde", 0.5),
        "k2i-iperf-off": mk("k2i-iperf-off", "kernel iperf3 -c -> ioth tap offload", "Gbit/s",
                            lambda: case_tap_iperf("k2i", 1500, True, s), "vde", 2.0),
        "rr-kk": mk("rr-kk", "round trips kernel->kernel veth", "rt/s",
                    lambda: case_veth("rr", 1500, r)),
        "rr-k2i": mk("rr-k2i", "round trips kernel->ioth tap", "rt/s",
                     lambda: case_tap("rr", "k2i", 1500, False, r, prof), "rr-kk", 5000),
        "rr-i2i": mk("rr-i2i", "round trips ioth->ioth switch", "rt/s",
                     lambda: case_switch("rr", 1500, r, prof), "rr-kk", 5000),
        "rr-i2i-vde": mk("rr-i2i-vde", "round trips ioth->ioth vde_switch", "rt/s",
                         lambda: case_switch("rr", 1500, r, prof, True), "rr-kk", 5000),
        "cps-kk": mk("cps-kk", "connections kernel->kernel veth", "conn/s",
                     lambda: case_veth("cps", 1500, r)),
        "cps-k2i": mk("cps-k2i", "connections kernel->ioth tap", "conn/s",
                      lambda: case_tap("cps", "k2i", 1500, False, r, prof), "cps-kk", 2000),
        "cps-i2i": mk("cps-i2i", "connections ioth->ioth switch", "conn/s",
                      lambda: case_switch("cps", 1500, r, prof), "cps-kk", 2000),
        "cps-i2i-vde": mk("cps-i2i-vde", "connections ioth->ioth vde_switch", "conn/s",
                          lambda: case_switch("cps", 1500, r, prof, True), "cps-kk", 2000),
        "conn10k": mk("conn10k", f"{count:,} established conns, RSS per end", "KiB",
                      lambda: isolated("conn10k", count)),
        "sockconns": mk("sockconns", "established ioth socket conns, RSS per end", "KiB",
                        lambda: isolated("sockconns", count)),
    }


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    """Readable table with ratios against in-run references and quoted LWIPv6 figures."""
    by = {r.key: r for r in results}
    print(f"\nioth TCP benchmark ({args.seconds:g} s bulk, {args.rr_seconds:g} s rr/cps per case;"
          " 2 shared cores: expect noise)")
    print(f"{'case':<48}{'value':>12} {'unit':<7}{'vs ref':>18}{'vs LWIPv6':>10}{'target':>12}"
          f"  cpu srv/cli/sw")
    for r in results:
        if r.error:
            print(f"{r.name:<48}{'FAILED':>12}  {r.error}")
            continue
        ref = by.get(r.ref)
        ratio = (f"{r.value / ref.value:.3f}x {r.ref}" if ref and ref.value > 0 and not ref.error
                 else "-")
        lw = "-"
        if r.unit == "Gbit/s" and r.key.startswith(("sw", "k2i", "i2k")):
            lw = f"{r.value / LWIP_GBPS:.2f}x"
        elif r.unit == "rt/s" and r.key != "rr-kk":
            lw = f"{r.value / LWIP_RR:.2f}x"
        tgt = "-"
        if r.target is not None:
            tgt = ("ok " if r.value >= r.target else "MISS ") + f"{r.target:g}"
        cpu = "/".join(f"{r.cpu[k]:.0%}" for k in ("server", "client", "switch")
                       if k in r.cpu) or "-"
        val = f"{r.value:,.3f}" if r.unit == "Gbit/s" else f"{r.value:,.0f}"
        if r.unit == "KiB":
            val = f"{r.value:,.1f}"
        print(f"{r.name:<48}{val:>12} {r.unit:<7}{ratio:>18}{lw:>10}{tgt:>12}  {cpu}")
        if r.note:
            print(f"{'':<8}{r.note}")
    print("LWIPv6 through vde_switch (quoted, not measured here): 0.20 Gbit/s, 4,700 rt/s.")


def main(argv: list[str] | None = None) -> int:
    """Parse options; run as worker or driver."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="short runs (1-2 s per case)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--only", default=ALL, help=f"comma list of cases (default: {ALL})")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per bulk case")
    ap.add_argument("--rr-seconds", type=float, default=None, help="seconds per rr/cps case")
    ap.add_argument("--conns", type=int, default=10000, help="connections for conn10k")
    ap.add_argument("--profile", default=None,
                    help="cProfile the ioth workers' main threads into PREFIX.server/.client")
    ap.add_argument("--pyspy", default=None, metavar="PREFIX",
                    help="py-spy (all threads, raw collapsed stacks) of the ioth workers into "
                    "PREFIX.RUN.ROLE.txt (RUN names the run, e.g. sw-cps-1500 for cps-i2i)")
    ap.add_argument("--perf", default=None, metavar="PREFIX",
                    help="perf stat (syscalls, futex, context switches) of the ioth workers into "
                    "PREFIX.RUN.ROLE.perf (no slow-down, unlike --strace)")
    ap.add_argument("--strace", default=None, metavar="PREFIX",
                    help="strace -c -f of the ioth workers into PREFIX.RUN.ROLE.strace")
    ap.add_argument("--timeline", default=None, metavar="PREFIX",
                    help="rr/cps cases: 0.4 s scheduler + sendto/recvfrom trace of the ends and "
                    "the switch into PREFIX.RUN.perf and the phases of a cycle into "
                    "PREFIX.RUN.txt (benchmarks/timeline.py; needs --rr-seconds >= 2)")
    # worker mode
    ap.add_argument("--worker", dest="role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--addr", default=A2, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=PORT, help=argparse.SUPPRESS)
    ap.add_argument("--vnl", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--config", default="", help=argparse.SUPPRESS)
    ap.add_argument("--memcase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--summarize", nargs="+", default=None, metavar="FILE",
                    help="summarize py-spy raw profiles and exit")
    args = ap.parse_args(argv)
    if args.summarize:
        for path in args.summarize:
            try:
                print(summarize(path))
            except (OSError, ValueError) as exc:
                print(f"bench_tcp: cannot summarize {path}: {exc}", file=sys.stderr)
                return 2
        return 0
    if args.role:
        args.seconds = args.seconds or 2.0
        return worker(args)
    if args.memcase:  # (isolated: one memory case in this fresh process, result as JSON)
        fn = case_conn10k if args.memcase == "conn10k" else case_sock_conns
        print(json.dumps(fn(args.conns)))
        return 0
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 5.0
    if args.rr_seconds is None:
        args.rr_seconds = 1.0 if args.quick else 3.0
    if os.geteuid() != 0:
        print("bench_tcp needs root (network namespaces, TAPs)", file=sys.stderr)
        return 2
    for tool in ("ip", "iperf3", "ss", "vde_switch", "vde_plug"):
        if shutil.which(tool) is None:
            print(f"bench_tcp needs {tool}", file=sys.stderr)
            return 2
    if args.timeline and args.rr_seconds < 2:
        ap.error("--timeline needs --rr-seconds >= 2")
    TRACE.update(pyspy=args.pyspy, strace=args.strace, perf=args.perf, timeline=args.timeline,
                 seconds=max(1.0, min(args.seconds, args.rr_seconds) - 1))
    os.environ["PYTHONPATH"] = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    cases = build_cases(args.seconds, args.rr_seconds, args.conns, args.profile)
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    for k in keys:
        if k not in cases:
            ap.error(f"unknown case {k!r} (known: {', '.join(cases)})")
    results = []
    for k in keys:
        res = cases[k]()
        shown = res.error or f"{res.value:,.3f} {res.unit}"
        print(f"  {k}: {shown}", file=sys.stderr, flush=True)
        results.append(res)
        for data, pids, kind in TRACE["pending"]:
            try:
                text = timeline.report(data, pids, kind, MSG)
            except (OSError, RuntimeError, ValueError) as exc:
                text = f"timeline of {data}: {exc}"
            with open(data.removesuffix(".perf") + ".txt", "w") as f:
                f.write(text + "\n")
            print(text, file=sys.stderr, flush=True)
        TRACE["pending"].clear()
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print_table(results, args)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
