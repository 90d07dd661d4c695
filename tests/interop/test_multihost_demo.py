"""The README's multi-host demo runs as written: two namespaces as hosts, vxvde between them."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.peers import missing, require_root

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "multihost-demo.sh")


def test_multihost_demo_script() -> None:
    require_root()
    if shutil.which("ioth") is None:
        missing("the ioth command is not installed (pip install -e .)")
    before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                check=True).stdout.split())
    proc = subprocess.run([SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 packets transmitted, 3 received" in proc.stdout
    assert proc.stdout.count("3 received") == 2  # IPv4 and IPv6
    assert "multi-host demo passed" in proc.stdout
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=True).stdout.split())
    assert not {n for n in after - before if n.startswith("ioth-host")}, "namespaces left behind"
