"""``ioth run``: an unmodified script on a fresh stack (its sockets, names, exit status)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import ioth
from ioth.sockets import socket as isocket
from tests.support.peers import ioth_cmd

SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for _ in range(50):
    s.sendto(sys.argv[1].encode(), ("peer.test", 5000))
    try:
        data, addr = s.recvfrom(100)
        break
    except TimeoutError:
        pass
print(type(s).__name__, data.decode(), addr[0], socket.gethostbyname("peer.test"))
sys.exit(int(sys.argv[2]))
"""


def test_script_runs_on_the_stack(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 peer.test\n")
    with ioth.Stack(f"switch://{tmp_path / 'sw'}", "eth,ip=192.0.2.1/24") as a:
        srv = isocket(a, socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind(("192.0.2.1", 5000))
        proc = subprocess.Popen(
            ioth_cmd("run", "--vnl", f"vde://{tmp_path / 'sw'}", "--config",
                     "eth,ip=192.0.2.2/24", "--hosts", str(hosts), str(script), "hello", "3"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            srv.settimeout(20)
            data, addr = srv.recvfrom(100)
            srv.sendto(data.upper(), addr)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        srv.close()
    assert proc.returncode == 3, err
    assert out.split() == ["DatagramSocket", "HELLO", "192.0.2.1", "192.0.2.1"]
    assert addr[0] == "192.0.2.2"


def test_usage_errors_exit_2() -> None:
    r = subprocess.run(ioth_cmd("run", "--config", "eth"), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "run:" in r.stderr
    r = subprocess.run([*ioth_cmd("run", "-m", "json.tool", "--sort-keys")],
                       input='{"b": 1, "a": 2}', capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.index('"a"') < r.stdout.index('"b"')
    assert sys.executable
