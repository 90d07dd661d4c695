"""Where a request/response or connection cycle spends its time, from a short scheduler trace.

``bench_tcp.py --timeline PREFIX`` records, for a fraction of a second in the middle of an rr or
cps case, the scheduler's switch and wake-up events and every ``sendto``/``recvfrom`` of the
machine (``perf record -a``), then :func:`report` turns them into two tables:

* per process (server, client, switch; all their threads): share of the window spent running,
  runnable but preempted, waiting for a CPU after a wake-up, blocked; context switches and
  wake-ups per cycle; which CPUs it ran on;
* per cycle phase, the median and mean time between the frames a process sends and receives,
  told apart by their length (IPv4 with TCP timestamps: SYN and SYN-ACK 74 bytes, pure ACK or FIN
  66, a segment with the 64-byte message 130).  For a connection (``cps``) from the client:
  SYN sent -> SYN-ACK received -> ACK sent -> request sent -> reply received -> FIN sent -> next
  SYN; from the server: SYN received -> SYN-ACK sent, request received -> reply sent -> FIN
  sent.  The difference between a client phase and the server's turnaround inside it is the two
  switch hops (switch work plus two wake-ups).

Tracing costs a few microseconds per event, so the absolute times are inflated (about 2x for
cps); the shares between phases and processes are what to read.

    python benchmarks/timeline.py DATA.perf server=PID client=PID switch=PID [--kind cps|rr]
"""

from __future__ import annotations

import itertools
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

EVENTS = ("sched:sched_switch,sched:sched_wakeup,syscalls:sys_enter_sendto,"
          "syscalls:sys_exit_recvfrom")
ETH_IP_TCP_TS = 14 + 20 + 32  # a pure ACK/FIN with the timestamp option
SYN_LEN = 14 + 20 + 40  # MSS, SACK-permitted, timestamps, window scale

_LINE = re.compile(r"\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")
_SWITCH = re.compile(r"prev_pid=(\d+) .*prev_state=(\S+) ==> .*next_pid=(\d+)")
_WAKE = re.compile(r"\bpid=(\d+)")
_LEN = re.compile(r"len: (0x[0-9a-f]+)")


def record_argv(out: str, seconds: float) -> list[str]:
    """The ``perf record`` command that traces the whole machine for ``seconds``."""
    return ["perf", "record", "-q", "-a", "-o", out, "-e", EVENTS, "--", "sleep",
            f"{seconds:g}"]


@dataclass
class Io:
    """One frame a process sent (``out``) or received (``in``)."""

    t: float
    way: str
    size: int


@dataclass
class Sched:
    """Scheduler accounting of one process (all of its threads), in seconds."""

    running: float = 0.0
    preempted: float = 0.0  # runnable, switched out while running
    wake_wait: float = 0.0  # woken, not yet on a CPU
    switches: int = 0
    wakeups: int = 0
    cpus: Counter[int] = field(default_factory=Counter)


def parse(lines: Iterable[str], pids: dict[int, str]
          ) -> tuple[dict[str, list[Io]], dict[str, Sched], float]:
    """(frames per role in time order, scheduler accounting per role, window seconds) from
    ``perf script -F pid,tid,cpu,time,event,trace`` lines; ``pids`` maps process id -> role
    (thread ids may be given too: a thread's events before its first own event then count)."""
    ios: dict[str, list[Io]] = defaultdict(list)
    sched: dict[str, Sched] = defaultdict(Sched)
    tid_role: dict[int, str] = dict(pids)  # threads join as their events show up
    state: dict[int, tuple[str, float]] = {}  # tid -> (running/preempted/woken/blocked, since)
    first = last = None
    for line in lines:
        m = _LINE.match(line)
        if not m:
            continue
        pid, tid, cpu, t, event, rest = (int(m[1]), int(m[2]), int(m[3]), float(m[4]), m[5],
                                         m[6])
        first = t if first is None else first
        last = t
        if pid in pids:
            tid_role[tid] = pids[pid]
        if event == "syscalls:sys_enter_sendto" and pid in pids:
            lm = _LEN.search(rest)
            if lm:
                ios[pids[pid]].append(Io(t, "out", int(lm[1], 16)))
        elif event == "syscalls:sys_exit_recvfrom" and pid in pids:
            size = int(rest.strip(), 16) if rest.strip().startswith("0x") else -1
            if 0 < size < 1 << 31:
                ios[pids[pid]].append(Io(t, "in", size))
        elif event == "sched:sched_switch":
            sm = _SWITCH.search(rest)
            if not sm:
                continue
            prev, prev_state, nxt = int(sm[1]), sm[2], int(sm[3])
            if prev in tid_role:
                s = sched[tid_role[prev]]
                kind, since = state.get(prev, ("", t))
                if kind == "running":
                    s.running += t - since
                s.switches += 1
                state[prev] = ("preempted" if prev_state.startswith("R") else "blocked", t)
            if nxt in tid_role:
                s = sched[tid_role[nxt]]
                kind, since = state.get(nxt, ("", t))
                if kind == "preempted":
                    s.preempted += t - since
                elif kind == "woken":
                    s.wake_wait += t - since
                s.cpus[cpu] += 1
                state[nxt] = ("running", t)
        elif event == "sched:sched_wakeup":
            wm = _WAKE.search(rest)
            if wm and int(wm[1]) in tid_role:
                w = int(wm[1])
                sched[tid_role[w]].wakeups += 1
                state[w] = ("woken", t)
    if first is not None and last is not None:
        for tid, (kind, since) in state.items():  # close the open intervals at the window end
            if kind == "running" and tid in tid_role:
                sched[tid_role[tid]].running += last - since
    return ios, sched, (last - first) if first is not None and last is not None else 0.0


def _after(ios: Sequence[Io], i: int, way: str, size: int, end: int) -> int | None:
    for j in range(i, end):
        if ios[j].way == way and ios[j].size == size:
            return j
    return None


def cps_phases(client: Sequence[Io], server: Sequence[Io], msg: int
               ) -> dict[str, list[float]]:
    """Per connection cycle: the phases named in the module docstring (seconds)."""
    data = ETH_IP_TCP_TS + msg
    out: dict[str, list[float]] = defaultdict(list)
    syns = [i for i, e in enumerate(client) if e.way == "out" and e.size == SYN_LEN]
    names = ("client: SYN sent -> SYN-ACK in", "client: SYN-ACK in -> ACK sent",
             "client: ACK sent -> request sent", "client: request sent -> reply in",
             "client: reply in -> FIN sent", "client: FIN sent -> next SYN sent")
    steps = (("in", SYN_LEN), ("out", ETH_IP_TCP_TS), ("out", data), ("in", data),
             ("out", ETH_IP_TCP_TS))
    for a, b in itertools.pairwise(syns):
        marks = [a]
        for way, size in steps:
            j = _after(client, marks[-1], way, size, b)
            if j is None:
                break
            marks.append(j)
        else:
            marks.append(b)
            t = [client[x].t for x in marks]
            for name, t0, t1 in zip(names, t, t[1:], strict=False):
                out[name].append(t1 - t0)
            out["cycle (client SYN to SYN)"].append(t[-1] - t[0])
    for i, e in enumerate(server):
        if e.way == "in" and e.size == SYN_LEN:
            j = _after(server, i, "out", SYN_LEN, min(len(server), i + 12))
            if j is not None:
                out["server: SYN in -> SYN-ACK sent"].append(server[j].t - e.t)
        elif e.way == "in" and e.size == data:
            j = _after(server, i, "out", data, min(len(server), i + 12))
            if j is not None:
                out["server: request in -> reply sent"].append(server[j].t - e.t)
                k = _after(server, j, "out", ETH_IP_TCP_TS, min(len(server), j + 6))
                if k is not None:
                    out["server: reply sent -> FIN sent"].append(server[k].t - server[j].t)
    return out


def rr_phases(client: Sequence[Io], server: Sequence[Io], msg: int
              ) -> dict[str, list[float]]:
    """Per round trip: client request sent -> reply in; server request in -> reply sent."""
    data = ETH_IP_TCP_TS + msg
    out: dict[str, list[float]] = defaultdict(list)
    for name, ios, first, then in (("client: request sent -> reply in", client, "out", "in"),
                                   ("server: request in -> reply sent", server, "in", "out")):
        for i, e in enumerate(ios):
            if e.way == first and e.size == data:
                j = _after(ios, i + 1, then, data, min(len(ios), i + 8))
                if j is not None:
                    out[name].append(ios[j].t - e.t)
    return out


def _share(part: float, window: float) -> str:
    return f"{100 * part / window:.1f}%" if window else "-"


def report(datafile: str, pids: dict[int, str], kind: str, msg: int = 64) -> str:
    """The two tables for a trace ``datafile``; ``pids``: process id -> role."""
    script = subprocess.run(["perf", "script", "-i", datafile, "-F",
                             "pid,tid,cpu,time,event,trace"],
                            capture_output=True, text=True, check=False)
    if script.returncode != 0:
        raise RuntimeError(f"perf script: {script.stderr.strip()[:200]}")
    ios, sched, window = parse(script.stdout.splitlines(), pids)
    phases = (cps_phases if kind == "cps" else rr_phases)(ios.get("client", []),
                                                          ios.get("server", []), msg)
    cycles = max(1, len(phases.get("cycle (client SYN to SYN)",
                                    phases.get("client: request sent -> reply in", []))))
    lines = [f"trace window {window * 1e3:.0f} ms, {cycles} cycles "
             "(times inflated by tracing; read the shares)",
             f"{'process':8} {'running':>8} {'preempted':>9} {'wake wait':>9} "
             f"{'switches/cycle':>14} {'wakeups/cycle':>13}  cpus"]
    for role in sorted(sched):
        s = sched[role]
        cpus = " ".join(f"cpu{c}:{n}" for c, n in sorted(s.cpus.items()))
        lines.append(f"{role:8} {_share(s.running, window):>8} "
                     f"{_share(s.preempted, window):>9} {_share(s.wake_wait, window):>9} "
                     f"{s.switches / cycles:14.1f} "
                     f"{s.wakeups / cycles:13.1f}  {cpus}")
    lines.append(f"{'phase':42} {'n':>5} {'median us':>10} {'mean us':>9}")
    for name, vals in phases.items():
        lines.append(f"{name:42} {len(vals):5d} {statistics.median(vals) * 1e6:10.1f} "
                     f"{statistics.mean(vals) * 1e6:9.1f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``timeline.py DATA role=PID ... [--kind cps|rr]``: print the report of a trace."""
    kind = "cps"
    pids: dict[int, str] = {}
    args = list(argv)
    if "--kind" in args:
        i = args.index("--kind")
        kind = args[i + 1] if i + 1 < len(args) else ""
        del args[i:i + 2]
    if kind not in ("cps", "rr") or not args:
        print("usage: timeline.py DATA role=PID ... [--kind cps|rr]", file=sys.stderr)
        return 2
    for a in args[1:]:
        role, _, pid = a.partition("=")
        if not pid.isdigit():
            print(f"timeline.py: bad role=PID {a!r}", file=sys.stderr)
            return 2
        pids[int(pid)] = role
    try:
        print(report(args[0], pids, kind))
    except (OSError, RuntimeError) as exc:
        print(f"timeline.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
