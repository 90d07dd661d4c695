"""``ioth demo`` end to end: the README's main job, no root needed."""

from __future__ import annotations

import json
import subprocess

from tests.support.peers import ioth_cmd


def test_demo_json_all_checks_pass() -> None:
    proc = subprocess.run(ioth_cmd("demo", "--json", "--nodes", "3", "--seconds", "0.3"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] is True
    names = [c["name"] for c in result["checks"]]
    assert sum(n.startswith("ping") for n in names) == 4  # 2 clients x IPv4/IPv6
    assert any(n.startswith("TCP") for n in names) and any(n.startswith("HTTP") for n in names)
    assert all(c["ok"] for c in result["checks"]), result["checks"]
    assert [n["node"] for n in result["nodes"]] == ["node1", "node2", "node3"]
    assert result["nodes"][0]["addresses"][0] == "198.51.100.1/24"


def test_demo_rejects_bad_node_count() -> None:
    proc = subprocess.run(ioth_cmd("demo", "--nodes", "1"), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--nodes 1" in proc.stderr
