"""Virtual Ethernet: VNL plugs and the switch engine."""

from ioth.net.plug import Plug, PlugCounters, WrapperPlug
from ioth.net.registry import open_plug, parse_vnl
from ioth.net.vnl import VNL

__all__ = ["VNL", "Plug", "PlugCounters", "WrapperPlug", "open_plug", "parse_vnl"]
