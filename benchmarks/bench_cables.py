"""Cable throughput: ioth udp:// and vxvde:// plugs against Debian's vde_plug, same run.

Two network namespaces joined by a veth pair; a sender in one pushes frames as fast as it can
for a few seconds, a receiver in the other counts what arrives (frames/s and Gbit/s at the
receiver).  ioth endpoints are Python processes using the plugs directly; Debian endpoints are
``vde_plug VNL`` processes fed/drained through their stdin/stdout stream framing (the way
``dpipe`` uses them), with small Python feeders.  Debian's stream framing stops at 9234-byte
frames, so the 65000-byte MTU row is ioth only.

Run as root:  python benchmarks/bench_cables.py [--duration 2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import struct
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


def frame_of(size: int) -> bytes:
    return bytes.fromhex("ffffffffffff020000000001") + b"\x88\xb5" + bytes(size - 14)


# -- workers (run inside a namespace) ---------------------------------------------------------

def worker_send(vnl: str, size: int, duration: float) -> None:
    from ioth.net.registry import open_plug

    plug = open_plug(vnl, mtu=max(1500, size - 14))
    frame = frame_of(size)
    send = plug.send
    sent = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for _ in range(256):
            send(frame)
        sent += 256
        plug.recv_frames(256)  # vxvde: drain our own echoes
    plug.close()
    print(json.dumps({"sent": sent}))


def report_recv(frames: int, nbytes: int, first: float, last: float) -> None:
    print(json.dumps({"frames": frames, "bytes": nbytes, "elapsed": max(last - first, 1e-9)}))


def worker_recv(vnl: str, size: int, timeout: float) -> None:
    from ioth.net.registry import open_plug

    plug = open_plug(vnl, mtu=max(1500, size - 14))
    print("ready", file=sys.stderr, flush=True)
    frames = nbytes = 0
    first = last = 0.0
    deadline = time.monotonic() + timeout
    fds = plug.filenos()
    while time.monotonic() < deadline:
        r, _, _ = select.select(fds, [], [], 1.0)
        if not r:
            if frames:
                break
            continue
        got = plug.recv_frames(1024)
        if got:
            now = time.monotonic()
            if not frames:
                first = now
            last = now
            frames += len(got)
            nbytes += sum(map(len, got))
    plug.close()
    report_recv(frames, nbytes, first, last)


def worker_feed(size: int, duration: float) -> None:
    """Stream-framed frames on stdout for ``duration`` seconds (Debian sender)."""
    chunk = (struct.pack("!H", size) + frame_of(size)) * max(1, 65536 // (size + 2))
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            os.write(1, chunk)
    except BrokenPipeError:
        pass


def worker_count(size: int, timeout: float) -> None:
    """Count the bytes of stream-framed frames on stdin (Debian receiver); every frame is
    ``size`` bytes, so no per-frame parsing is needed to count them."""
    fd = sys.stdin.fileno()
    print("ready", file=sys.stderr, flush=True)
    total = 0
    first = last = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1.0)
        if not r:
            if total:
                break
            continue
        data = os.read(fd, 1 << 20)
        if not data:
            break
        now = time.monotonic()
        if not total:
            first = now
        last = now
        total += len(data)
    frames = total // (size + 2)
    report_recv(frames, frames * size, first, last)


# -- orchestration -----------------------------------------------------------------------------

def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def run_pair(ns1: str, ns2: str, send_cmd: str, recv_cmd: str, duration: float
             ) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # stdin stays open: vde_plug ends at EOF on its stdin
    recv = subprocess.Popen(["ip", "netns", "exec", ns2, "sh", "-c", recv_cmd], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            start_new_session=True)
    assert recv.stderr is not None
    recv.stderr.readline()  # ready
    time.sleep(0.3)
    send = subprocess.Popen(["ip", "netns", "exec", ns1, "sh", "-c", send_cmd], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert recv.stdout is not None
        # not read() to EOF: a receiving vde_plug lives on until its process group is stopped
        out = b""
        while not out.startswith(b"{"):
            out = recv.stdout.readline()
            if not out:
                raise RuntimeError("receiver ended without a result")
    finally:
        for p in (send, recv):
            if p.poll() is None:
                os.killpg(p.pid, 15)
            p.wait(10)
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", choices=["send", "recv", "feed", "count"])
    parser.add_argument("--vnl", default="")
    parser.add_argument("--size", type=int, default=1514)
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    if args.worker == "send":
        worker_send(args.vnl, args.size, args.duration)
        return 0
    if args.worker == "recv":
        worker_recv(args.vnl, args.size, args.duration + 15)
        return 0
    if args.worker == "feed":
        worker_feed(args.size, args.duration)
        return 0
    if args.worker == "count":
        worker_count(args.size, args.duration + 15)
        return 0

    tag = secrets.token_hex(3)
    ns1, ns2 = f"bench-{tag}-a", f"bench-{tag}-b"
    py = f"{sys.executable} {HERE}"
    sh(f"ip netns add {ns1} && ip netns add {ns2}")
    try:
        sh(f"ip -n {ns1} link set lo up && ip -n {ns2} link set lo up && "
           f"ip -n {ns1} link add va mtu 65535 type veth peer name vb netns {ns2} mtu 65535 && "
           f"ip -n {ns1} addr add 198.18.0.1/24 dev va && ip -n {ns1} link set va up && "
           f"ip -n {ns2} addr add 198.18.0.2/24 dev vb && ip -n {ns2} link set vb up && "
           f"ip -n {ns1} route add 224.0.0.0/4 dev va && ip -n {ns2} route add 224.0.0.0/4 dev vb")
        cables = {
            "udp": ("udp://198.18.0.1:7001->198.18.0.2:7002",
                    "udp://198.18.0.2:7002->198.18.0.1:7001"),
            "vxvde": ("vxvde://239.1.2.3", "vxvde://239.1.2.3"),
        }
        d = args.duration
        print(f"{'cable':6} {'frame':>6}  {'ioth kfr/s':>10} {'Gbit/s':>7}  "
              f"{'vde_plug kfr/s':>14} {'Gbit/s':>7}  {'ratio':>6}")
        for name, (vnl1, vnl2) in cables.items():
            for size in (1514, 9014, 65014):
                mtu = f"/mtu={size - 14}" if size > 1514 else ""
                io = run_pair(ns1, ns2,
                              f"{py} --worker send --vnl '{vnl1}{mtu}' --size {size} "
                              f"--duration {d}",
                              f"{py} --worker recv --vnl '{vnl2}{mtu}' --size {size} "
                              f"--duration {d}", d)
                io_fps = io["frames"] / io["elapsed"]
                io_gbps = io["bytes"] * 8 / io["elapsed"] / 1e9
                if size <= 9234:
                    deb = run_pair(ns1, ns2,
                                   f"{py} --worker feed --size {size} --duration {d} | "
                                   f"vde_plug '{vnl1}'",
                                   f"vde_plug '{vnl2}' | {py} --worker count --size {size} "
                                   f"--duration {d}", d)
                    deb_fps = deb["frames"] / deb["elapsed"] if deb["frames"] else 0.0
                    deb_gbps = deb["bytes"] * 8 / deb["elapsed"] / 1e9 if deb["frames"] else 0.0
                    ratio = f"{io_fps / deb_fps:6.2f}" if deb_fps else "   n/a"
                    deb_txt = f"{deb_fps / 1e3:14.1f} {deb_gbps:7.2f}"
                else:
                    ratio, deb_txt = "   n/a", f"{'(no framing)':>14} {'':>7}"
                print(f"{name:6} {size:6}  {io_fps / 1e3:10.1f} {io_gbps:7.2f}  {deb_txt}  "
                      f"{ratio}", flush=True)
    finally:
        subprocess.run(["ip", "netns", "delete", ns1], check=False)
        subprocess.run(["ip", "netns", "delete", ns2], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
