"""``ioth ping`` and ``ioth node`` against ioth stacks over ptp:// and an in-process ioth switch
(no root needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import ioth
from ioth.cli.main import main
from tests.support.peers import ioth_cmd, stop_process


def test_ping_cli_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, fragment in ((["ping", "--vnl", "null://", "not-an-ip"], "numeric"),
                           (["ping", "--vnl", "null://", "-6", "192.0.2.1"], "-6"),
                           (["ping", "--vnl", "null://", "-c", "0", "192.0.2.1"], "count"),
                           (["ping", "--vnl", "null://", "-s", "70000", "192.0.2.1"], "size"),
                           (["ping", "192.0.2.1"], "--vnl"),
                           (["ping", "--vnl", "null://", "--config", "eth,bogus", "192.0.2.1"],
                            "bogus"),
                           (["node"], "--vnl")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1


def test_ping_cli_no_route_reports_errors() -> None:
    r = subprocess.run(ioth_cmd("ping", "--vnl", "null://", "--config", "eth,ip=192.0.2.1/24",
                                "-c", "2", "-i", "0", "-W", "0.2", "203.0.113.1"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "Network is unreachable" in r.stdout and "0 received, +2 errors" in r.stdout


def test_ping_cli_v4_v6_to_an_ioth_stack(tmp_path: Path) -> None:
    sw = tmp_path / "sw"
    with ioth.Stack(f"switch://{sw}", "eth,ip=192.0.2.1/24,ip=2001:db8::1/64") as peer:
        peer.wait_dad()
        r = subprocess.run(ioth_cmd("ping", "--vnl", f"vde://{sw}", "--config",
                                    "eth,ip=192.0.2.2/24", "-c", "3", "-i", "0.1", "-s", "2000",
                                    "192.0.2.1"), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(re.findall(r"2008 bytes from 192\.0\.2\.1: icmp_seq=\d time=", r.stdout)) == 3
        assert "3 packets transmitted, 3 received, 0% packet loss" in r.stdout
        assert re.search(r"rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", r.stdout)
        r = subprocess.run(ioth_cmd("ping", "--vnl", f"vde://{sw}", "--config",
                                    "eth,ip=2001:db8::2/64", "-6", "-c", "2", "-i", "0.1",
                                    "2001:db8::1"), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "2 received" in r.stdout, r.stdout + r.stderr
        assert peer.counters()["icmp6"]["tx_echo_reply"] == 2


def test_node_cli_answers_ping(tmp_path: Path) -> None:
    path = tmp_path / "cable"
    node = subprocess.Popen(ioth_cmd("node", "--vnl", f"ptp://{path}", "--config",
                                     "eth,ip=192.0.2.5/24", "--stats"),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert node.stdout is not None
        lines = [node.stdout.readline() for _ in range(5)]
        text = "".join(lines)
        assert "vde0: UP" in text and "inet 192.0.2.5/24" in text
        with ioth.Stack(f"ptp://{path}", "eth,ip=192.0.2.6/24") as me:
            sock = me.socket(2, 2, 1)
            sock.settimeout(5)
            sock.sendto(b"\x08\0\0\0\0\0\0\x01payload", ("192.0.2.5", 0))
            data, src = sock.recvfrom(100)
            assert data[0] == 0 and data.endswith(b"payload") and src[0] == "192.0.2.5"
    finally:
        stop_process(node)
    assert node.returncode == 0
