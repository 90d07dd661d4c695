"""Which class implements each VNL scheme, and :func:`open_plug`.

Plug modules are imported lazily, so that opening a ``null://`` plug never imports the
``cryptography`` package that ``agno://`` needs.
"""

from __future__ import annotations

import importlib
from typing import Any

from ioth.errors import VNLError
from ioth.net import vnl as vnlmod
from ioth.net.plug import Plug

#: scheme -> "module:Class"
PLUG_CLASSES: dict[str, str] = {
    "vde": "ioth.net.plugs.vde:VdePlug",
    "ptp": "ioth.net.plugs.ptp:PtpPlug",
    "null": "ioth.net.plugs.null:NullPlug",
    "cmd": "ioth.net.plugs.cmd:CmdPlug",
    "tap": "ioth.net.plugs.tap:TapPlug",
    "switch": "ioth.net.switch.server:SwitchPlug",
    "hub": "ioth.net.switch.server:HubPlug",
    # VDE part 2 (networks across hosts, wrappers)
    "udp": "ioth.net.plugs.udp:UdpPlug",
    "vxvde": "ioth.net.plugs.vxvde:VxvdePlug",
    "vxlan": "ioth.net.plugs.vxlan:VxlanPlug",
    "vlan": "ioth.net.plugs.vlan:VlanPlug",
    "agno": "ioth.net.plugs.agno:AgnoPlug",
    "impair": "ioth.net.plugs.impair:ImpairPlug",
    "capture": "ioth.net.plugs.capture:CapturePlug",
}


def plug_class(scheme: str) -> type[Plug]:
    """The plug class for ``scheme``; VNLError if there is none."""
    target = PLUG_CLASSES.get(scheme)
    if target is None:
        known = ", ".join(sorted(PLUG_CLASSES))
        raise VNLError(f"unknown VNL module {scheme!r} (known: {known})")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Plug] = getattr(module, class_name)
    return cls


def parse_vnl(text: str) -> vnlmod.VNL:
    """Parse ``text`` with the argument style and keys of its scheme's plug."""
    if text.strip() == "":
        text = vnlmod.default_vnl()
    scheme, _ = vnlmod.split_scheme(text)
    cls = plug_class(scheme)
    return vnlmod.parse(text, cls.STYLE, cls.KEYS, cls.BARE_ARGS)


def open_plug(text: str, **kwargs: Any) -> Plug:
    """Open the plug named by VNL ``text`` (e.g. ``vde:///tmp/sw``, ``tap://t0``).

    Keyword arguments are passed to the plug class (for example ``mtu=9000``).
    """
    parsed = parse_vnl(text)
    cls = plug_class(parsed.scheme)
    return cls.from_vnl(parsed, **kwargs)
