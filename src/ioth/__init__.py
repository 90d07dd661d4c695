"""ioth: the Internet of Threads for Python.

Every process, group of processes or single thread can be an Internet node with its own IPv4/IPv6
stack, plugged into VDE-compatible virtual Ethernet networks.
"""

from ioth.errors import ConfigError, IothUserError, PlugClosedError, VNLError
from ioth.net import open_plug, parse_vnl
from ioth.sockets.default import set_default_stack, use
from ioth.stack.stack import Stack, msocket

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "IothUserError",
    "PlugClosedError",
    "Stack",
    "VNLError",
    "__version__",
    "msocket",
    "open_plug",
    "parse_vnl",
    "set_default_stack",
    "use",
]
