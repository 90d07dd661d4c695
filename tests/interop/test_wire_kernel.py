"""``ioth wire`` (the wirefilter equivalent) between two kernel stacks: TAPs in two namespaces.

The kernel's ping sees what the impairment core does: losses one way, duplicates the other way
and the added delay (a lower bound on the round trip time).
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.peers import ioth_cmd, require_tools, stop_process, wait_for_link

pytestmark = pytest.mark.interop


def test_ping_through_ioth_wire_sees_loss_dup_and_delay(make_netns: object) -> None:
    require_tools("ping")
    ns1, ns2 = make_netns(), make_netns()  # type: ignore[operator]
    wire = subprocess.Popen(
        ioth_cmd("wire", f"tap://t0[up/netns={ns1.name}]", f"tap://t1[up/netns={ns2.name}]",
                 "--loss", "30:0", "--dup", "0:100", "--delay", "50", "--seed", "7"),
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_link(ns1, "t0")
        wait_for_link(ns2, "t1")
        ns1.sh("ip addr add 198.51.100.1/24 dev t0")
        ns2.sh("ip addr add 198.51.100.2/24 dev t1")
        ping = ns1.run(["ping", "-c", "30", "-i", "0.05", "-W", "2", "198.51.100.2"],
                       check=False, timeout=60)
        out = ping.stdout
        m = re.search(r"(\d+) packets transmitted, (\d+) received, \+(\d+) duplicates", out)
        assert m, out
        sent, received, dups = (int(x) for x in m.groups())
        assert sent == 30
        assert 8 <= received <= 29, out  # 30 % of the requests (and maybe ARP) lost
        assert dups >= received - 1, out  # every reply duplicated
        rtt_min = float(re.search(r"= ([\d.]+)/", out).group(1))  # type: ignore[union-attr]
        assert rtt_min >= 100.0, out  # 50 ms each way
    finally:
        stop_process(wire)
    err = wire.stderr.read() if wire.stderr else ""
    lr = re.search(r"LR: in (\d+) out (\d+) lost (\d+) dup (\d+)", err)
    rl = re.search(r"RL: in (\d+) out (\d+) lost (\d+) dup (\d+)", err)
    assert lr and rl, err
    assert int(lr.group(3)) > 0 and int(lr.group(4)) == 0
    assert int(rl.group(3)) == 0 and int(rl.group(4)) > 0
