"""`ioth plug`: argument errors, stdin/stdout stream mode, daemon and pidfile."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

from ioth.net import stream
from ioth.net.plugs.ptp import PtpPlug
from tests.support.peers import ioth_cmd, run, wait_for

FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"s" * 100


def test_bad_vnl_exit_2_one_line() -> None:
    for vnl in ("bogus://x", "vde:///tmp/x[colour=red]", "ptp:///tmp/x[mtu=5]"):
        res = run(ioth_cmd("plug", vnl, "null://"), check=False)
        assert res.returncode == 2, (vnl, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ioth plug: error:"), res.stderr


def test_missing_switch_exit_1() -> None:
    res = run(ioth_cmd("plug", "vde:///nonexistent/switch"), check=False)
    assert res.returncode == 1
    assert "nonexistent" in res.stderr


def test_stream_mode_and_summary(tmp_path: Path) -> None:
    path = str(tmp_path / "cable")
    ours = PtpPlug(path)
    proc = subprocess.Popen(ioth_cmd("-v", "plug", f"ptp://{path}"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(path + "+"), 10, what="ioth plug's ptp end")
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(stream.encode(FRAME))
        proc.stdin.flush()
        deadline = time.monotonic() + 5
        got: list[bytes] = []
        while not got and time.monotonic() < deadline:
            select.select([ours.fileno()], [], [], 0.1)
            got = ours.recv_frames()
        assert got == [FRAME]
        assert ours.send(FRAME[::-1])
        dec = stream.StreamDecoder()
        out: list[bytes] = []
        while not out and time.monotonic() < deadline:
            select.select([proc.stdout], [], [], 0.1)
            out = dec.feed(os.read(proc.stdout.fileno(), 65536))
        assert out == [FRAME[::-1]]
        proc.stdin.close()  # end of the stream: ioth plug exits
        assert proc.wait(10) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "stdio:// -> ptp://" in err and "1 frames" in err, err
        assert not os.path.exists(path + "+")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ours.close()


def test_daemon_and_pidfile(tmp_path: Path) -> None:
    pidfile = tmp_path / "plug.pid"
    path = str(tmp_path / "cable")
    res = run(ioth_cmd("plug", "--daemon", "--pidfile", str(pidfile), f"ptp://{path}",
                       "null://"), check=False)
    assert res.returncode == 0, res.stderr
    wait_for(pidfile.exists, 10, what="pidfile")
    wait_for(lambda: pidfile.read_text().strip().isdigit(), 10, what="pid in pidfile")
    pid = int(pidfile.read_text())
    wait_for(lambda: os.path.exists(path), 10, what="daemon's ptp end")
    os.kill(pid, 0)  # alive
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), 10, what="pidfile removal")
    wait_for(lambda: not os.path.exists(path), 10, what="daemon's cleanup")
