"""TCP for ioth stacks: a sans-IO protocol core and a per-stack demultiplexer.

* :class:`TcpConnection` -- one TCB (RFC 9293 state machine, options, recovery, timers).
* :class:`TcpLayer` -- listeners, connections by 4-tuple, RSTs, SYN cookies, byte codec.
* :class:`TcpPolicy` -- per-stack tunables, overridable per connection.
* :func:`register_cc` -- add a congestion controller (NewReno and CUBIC are built in).
"""

from __future__ import annotations

from ioth.stack.tcp.cc import CongestionControl, Cubic, NewReno, cc_names, register_cc
from ioth.stack.tcp.connection import State, TcpConnection, TcpInfo
from ioth.stack.tcp.isn import IsnGenerator
from ioth.stack.tcp.policy import TcpPolicy
from ioth.stack.tcp.segment import Segment

__all__ = [
    "CongestionControl",
    "Cubic",
    "IsnGenerator",
    "NewReno",
    "Segment",
    "State",
    "TcpConnection",
    "TcpInfo",
    "TcpPolicy",
    "cc_names",
    "register_cc",
]
