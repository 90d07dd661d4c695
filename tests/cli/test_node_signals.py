"""``ioth node`` exits cleanly however many SIGTERMs a supervisor sends while it exits
(CPython restores the default disposition of Python-handled signals while it finalises: a
second SIGTERM landing then used to kill the node with -15)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import ioth
from tests.support.peers import ioth_cmd, stop_process


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
                deadline = time.monotonic() + 20
                # SIGTERM every 0.2 ms until it is gone: some land during its exit
                while node.poll() is None and time.monotonic() < deadline:
                    try:
                        os.kill(node.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        break
                    time.sleep(0.0002)
                node.wait(10)
                err = node.stderr.read() if node.stderr is not None else ""
                assert node.returncode == 0, err
            finally:
                stop_process(node)
