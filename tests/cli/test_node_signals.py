"""``ioth node`` and ``ioth switch`` exit cleanly however many SIGTERMs a supervisor sends
while they exit (CPython restores the default disposition of Python-handled signals while it
finalises: a second SIGTERM landing then killed them with -15)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import ioth
from tests.support.peers import ioth_cmd, stop_process


def _hammer(proc: subprocess.Popen[str]) -> None:
    """SIGTERM every 0.2 ms until ``proc`` is gone (some land during its exit); it must
    exit with status 0."""
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.0002)
    proc.wait(10)
    err = proc.stderr.read() if proc.stderr is not None else ""
    assert proc.returncode == 0, err


def test_node_survives_repeated_sigterm_while_exiting(tmp_path: Path) -> None:
    sw = tmp_path / "sw"
    with ioth.Stack(f"switch://{sw}", "eth,ip=192.0.2.1/24"):
        for _ in range(3):
            node = subprocess.Popen(
                ioth_cmd("node", "--vnl", f"vde://{sw}", "--config", "eth,ip=192.0.2.2/24"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True)
            try:
                assert node.stdout is not None
                while "ioth node ready" not in (line := node.stdout.readline()):
                    assert line, "ioth node exited early"
                _hammer(node)
            finally:
                stop_process(node)


def test_switch_survives_repeated_sigterm_while_exiting(tmp_path: Path) -> None:
    for i in range(3):
        sw = tmp_path / f"sw{i}"
        proc = subprocess.Popen(ioth_cmd("switch", str(sw)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not (sw / "ctl").exists():
                assert proc.poll() is None and time.monotonic() < deadline, "no switch"
                time.sleep(0.01)
            _hammer(proc)
        finally:
            stop_process(proc)
