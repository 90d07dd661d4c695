"""The ``ss``-like TCP listing: :func:`ioth.cli.tcpstat.format_tcp_listing` and ``ioth node``
printing it on SIGUSR1 and with ``--stats`` at exit (node and peer over an ioth switch)."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import IO

import ioth
from ioth.cli.tcpstat import format_tcp_listing
from tests.support.peers import ioth_cmd, stop_process


def test_format_tcp_listing_columns() -> None:
    rows = [
        {"state": "LISTEN", "local": "*:80", "remote": "*:*", "accept_queue": 1, "backlog": 8,
         "cc": "cubic"},
        {"state": "ESTABLISHED", "local": "192.0.2.1:80", "remote": "192.0.2.2:40000",
         "cc": "newreno", "cwnd": 14480, "ssthresh": None, "srtt": 0.0015, "rttvar": 0.0005,
         "rto": 0.2, "retransmissions": 3, "send_queue": 10, "recv_queue": 0},
    ]
    lines = format_tcp_listing(rows).splitlines()
    assert lines[0].split() == ["State", "Recv-Q", "Send-Q", "Local", "Peer", "CC", "Cwnd",
                                "Ssthresh", "SRTT(ms)", "RTTVar(ms)", "RTO(ms)", "Retrans"]
    assert lines[1].split() == ["LISTEN", "1", "8", "*:80", "*:*", "cubic", "-", "-", "-", "-",
                                "-", "-"]
    assert lines[2].split() == ["ESTABLISHED", "0", "10", "192.0.2.1:80", "192.0.2.2:40000",
                                "newreno", "14480", "-", "1.5", "0.5", "200.0", "3"]
    # aligned: every column starts at the same offset on every line
    assert lines[1].index("*:80") == lines[2].index("192.0.2.1:80") == lines[0].index("Local")
    assert format_tcp_listing([]).split() == lines[0].split()


class _Lines:
    """Lines of a process's stdout, read by a thread (readline with a timeout)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.q.put(line)

    def until(self, pattern: str, timeout: float = 15.0) -> list[str]:
        seen: list[str] = []
        while True:
            line = self.q.get(timeout=timeout)
            seen.append(line)
            if re.search(pattern, line):
                return seen


def test_node_prints_tcp_listing_on_sigusr1_and_at_exit(tmp_path: Path) -> None:
    sw = tmp_path / "sw"
    with ioth.Stack(f"switch://{sw}", "eth,ip=192.0.2.1/24") as peer:
        node = subprocess.Popen(
            ioth_cmd("node", "--vnl", f"vde://{sw}", "--config",
                     "eth,ip=192.0.2.2/24,tcp_cc=newreno", "--tcp-echo", "7", "--stats"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        c = None
        try:
            out = _Lines(node)
            out.until("ioth node ready")
            c = peer.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(("192.0.2.2", 7))
            c.sendall(b"hello" * 1000)
            got = b""
            while len(got) < 5000:
                got += c.recv(65536)
            assert got == b"hello" * 1000
            node.send_signal(signal.SIGUSR1)
            table = out.until(r"^ESTABLISHED ")
            assert table[0].split()[:5] == ["State", "Recv-Q", "Send-Q", "Local", "Peer"]
            listen = [x for x in table if x.startswith("LISTEN")]
            assert listen and ":7 " in listen[0] and "newreno" in listen[0]
            est = table[-1].split()
            assert est[3] == "192.0.2.2:7" and est[4].startswith("192.0.2.1:")
            assert est[5] == "newreno" and int(est[6]) > 0 and float(est[8]) > 0
            assert int(est[11]) >= 0
            node.send_signal(signal.SIGTERM)
            counters = out.until(r"^\{")[-1]
            assert json.loads(counters)["tcp"]
            assert out.until(r"^ESTABLISHED .*192\.0\.2\.2:7 ")[0].startswith("State")
            assert node.wait(10) == 0
        finally:
            if c is not None:
                c.close()
            stop_process(node)
