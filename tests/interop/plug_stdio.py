"""Test helper: join an ioth plug (VNL argv[1]) to stdin/stdout with VDE stream framing.

Frames read from stdin (2-byte big-endian length + frame) are sent on the plug; frames received
are written to stdout the same way.  At EOF on stdin (or SIGTERM) it prints the plug's counters
(and vxvde/vxlan unicast/multicast send counts, agno drop reasons) as one JSON line on stderr.
Run it inside a namespace with ``ip netns exec NS python tests/interop/plug_stdio.py VNL``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import sys
from typing import Any

from ioth.net.registry import open_plug


def report(plug: Any) -> None:
    data: dict[str, Any] = plug.counters.as_dict()
    for name in ("unicast_tx", "multicast_tx", "unicast_rx", "multicast_rx", "echo_dropped",
                 "closes_received"):
        if hasattr(plug, name):
            data[name] = getattr(plug, name)
    codec = getattr(plug, "codec", None)
    if codec is not None:
        data["bad_tag"] = codec.bad_tag
        data["bad_time"] = codec.bad_time
    sys.stderr.write(json.dumps(data) + "\n")
    sys.stderr.flush()


def main() -> int:
    plug = open_plug(sys.argv[1])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sys.stderr.write("ready\n")
    sys.stderr.flush()
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    buf = b""
    fds = [stdin, *plug.filenos()]
    while not stop:
        try:
            ready, _, _ = select.select(fds, [], [], 0.2)
        except InterruptedError:
            continue
        if stdin in ready:
            chunk = os.read(stdin, 65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2:
                (n,) = struct.unpack_from("!H", buf)
                if len(buf) < 2 + n:
                    break
                if n:
                    plug.send(buf[2:2 + n])
                buf = buf[2 + n:]
        for frame in plug.recv_frames(256):
            os.write(stdout, struct.pack("!H", len(frame)) + frame)
    report(plug)
    plug.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
