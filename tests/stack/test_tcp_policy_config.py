"""Per-stack TCP policy from ``tcp_*`` configuration tags, per-socket setsockopt overrides and
``Stack.tcp_connections()``: two ioth stacks over an in-process ioth switch (``switch://``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ioth
from ioth.errors import ConfigError
from ioth.stack.config import TCP_TAGS, parse_config
from ioth.stack.tcp.policy import TcpPolicy


def test_tcp_tags_parse_to_policy_fields() -> None:
    cfg = parse_config("tcp_cc=newreno tcp_iw=4,tcp_rmem=131072;tcp_wmem=65536 tcp_rto_min=0.5"
                       " TCP_RTO_MAX=30 tcp_retries=5 tcp_synretries=2 tcp_delack=0.01"
                       " tcp_timewait=2 tcp_keepidle=60 tcp_keepintvl=5 tcp_keepcnt=3"
                       " tcp_nodelay -tcp_sack tcp_syn_backlog=16 -tcp_mss")
    assert cfg.tcp == {
        "congestion_control": "newreno", "initial_window": "4", "recv_buffer": "131072",
        "send_buffer": "65536", "min_rto": "0.5", "max_rto": "30", "retries": "5",
        "syn_retries": "2", "delayed_ack": "0.01", "time_wait": "2", "keepidle": "60",
        "keepintvl": "5", "keepcnt": "3", "nodelay": "yes", "sack": "no", "syn_backlog": "16",
        "mss": None,
    }
    fields = {f for f in TcpPolicy.__dataclass_fields__}
    assert set(TCP_TAGS.values()) <= fields


@pytest.mark.parametrize(("text", "fragment"), [
    ("tcp_cc=vegas", "tcp_cc=vegas"),
    ("tcp_iw=ten", "tcp_iw=ten"),
    ("tcp_iw", "tcp_iw"),
    ("tcp_rmem=0", "tcp_rmem=0"),
    ("tcp_rto_min=-1", "tcp_rto_min=-1"),
    ("tcp_nodelay=maybe", "tcp_nodelay=maybe"),
    ("tcp_bogus=1", "tcp_bogus"),
    ("-tcp_iw=3", "-tcp_iw=3"),
])
def test_bad_tcp_tags_are_named(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config(text)


def test_stack_applies_and_resets_tcp_policy() -> None:
    with ioth.Stack(config="tcp_cc=newreno,tcp_iw=4,tcp_rto_min=0.5,tcp_nodelay") as s:
        p = s.tcp_policy
        assert (p.congestion_control, p.initial_window, p.min_rto, p.nodelay) == \
            ("newreno", 4, 0.5, True)
        s.config("-tcp_cc,-tcp_nodelay,tcp_keepcnt=3")  # later strings change it further
        p = s.tcp_policy
        assert (p.congestion_control, p.initial_window, p.nodelay, p.keepcnt) == \
            ("cubic", 4, False, 3)
        with pytest.raises(ConfigError, match="tcp_rto_min, tcp_rto_max"):
            s.config("tcp_rto_min=5,tcp_rto_max=2")
        assert s.tcp_policy == p  # a rejected string changes nothing
        s.tcp_policy = p.replace(time_wait=1.0)
        assert s.tcp_policy.time_wait == 1.0 and s.core.tcp.policy.time_wait == 1.0


def _wait(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def _established(stack: ioth.Stack) -> list[dict[str, Any]]:
    return [r for r in stack.tcp_connections() if r["state"] == "ESTABLISHED"]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ioth.Stack, ioth.Stack]]:
    sw = tmp_path / "sw"
    with ioth.Stack(f"switch://{sw}", "eth,ip=192.0.2.1/24,tcp_cc=newreno,tcp_iw=4,"
                    "tcp_rmem=131072,tcp_nodelay,tcp_keepalive") as server, \
            ioth.Stack(f"vde://{sw}", "eth,ip=192.0.2.2/24") as client:
        yield server, client


def test_policy_applies_to_new_connections_and_setsockopt_overrides(
        pair: tuple[ioth.Stack, ioth.Stack]) -> None:
    server, client = pair
    ls = server.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("192.0.2.1", 8080))
    ls.listen(4)
    assert [r["state"] for r in server.tcp_connections()] == ["LISTEN"]
    assert server.tcp_connections()[0]["local"] == "192.0.2.1:8080"
    assert server.tcp_connections()[0]["cc"] == "newreno"
    c = client.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 40000)
    c.settimeout(10)
    c.connect(("192.0.2.1", 8080))
    ls.settimeout(10)
    a, _ = ls.accept()
    try:
        a.settimeout(10)
        c.sendall(b"x" * 100_000)
        got = 0
        while got < 100_000:
            got += len(a.recv(65536))
        _wait(lambda: bool(_established(server)) and bool(_established(client)))
        srow, = _established(server)
        crow, = _established(client)
        # the server's connection follows its stack's policy ...
        assert srow["cc"] == "newreno" and srow["recv_buffer"] == 131072
        assert srow["nodelay"] is True and srow["keepalive"] is True
        assert srow["cwnd"] == 4 * srow["mss"]  # initial window, nothing sent yet
        assert srow["local"] == "192.0.2.1:8080" and srow["remote"] == crow["local"]
        # ... the client's the defaults, changed per socket by setsockopt
        assert crow["cc"] == "cubic" and crow["nodelay"] is True
        assert crow["recv_buffer"] == 80000  # SO_RCVBUF doubled, as Linux does
        assert crow["remote"] == "192.0.2.1:8080"
        assert crow["segments_out"] > 10 and crow["srtt"] is not None and crow["rto"] > 0
        assert crow["cwnd"] > 0 and crow["retransmissions"] == 0
        # changing the stack's policy affects connections opened later only
        client.config("tcp_cc=newreno")
        assert _established(client)[0]["cc"] == "cubic"
    finally:
        a.close()
        c.close()
        ls.close()


def test_client_socket_inherits_stack_nodelay(tmp_path: Path) -> None:
    sw = tmp_path / "sw"
    with ioth.Stack(f"switch://{sw}", "eth,ip=192.0.2.1/24") as server, \
            ioth.Stack(f"vde://{sw}", "eth,ip=192.0.2.2/24,tcp_nodelay") as client:
        ls = server.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("192.0.2.1", 8081))
        ls.listen(1)
        c = client.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(("192.0.2.1", 8081))
        try:
            _wait(lambda: bool(_established(client)))
            assert _established(client)[0]["nodelay"] is True
        finally:
            c.close()
            ls.close()


def test_time_wait_entries_are_listed(pair: tuple[ioth.Stack, ioth.Stack]) -> None:
    """A connection closed first by this side is listed in TIME-WAIT (a compact record, not
    the TCB) with its addresses and the policy it was opened with."""
    server, client = pair
    ls = server.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("192.0.2.1", 8082))
    ls.listen(1)
    ls.settimeout(10)
    c = client.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(("192.0.2.1", 8082))
    a, _ = ls.accept()
    host, port = a.getsockname()
    local = f"{host}:{port}"
    a.close()  # the server closes first: its side ends in TIME-WAIT
    assert c.recv(10) == b""
    c.close()
    ls.close()

    def tw() -> list[dict[str, Any]]:
        return [r for r in server.tcp_connections() if r["state"] == "TIME-WAIT"]
    _wait(lambda: bool(tw()))
    row, = tw()
    assert row["local"] == local and row["remote"].startswith("192.0.2.2:")
    assert row["cc"] == "newreno" and row["recv_buffer"] == 131072
    assert server.core.tcp.time_wait  # held compactly, outside the connection table
    assert not [r for r in server.tcp_connections() if r["state"] == "CLOSED"]
