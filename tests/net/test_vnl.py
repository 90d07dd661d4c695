"""VNL parser: the three argument styles, nesting, quoting, abbreviations, errors."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ioth.errors import VNLError
from ioth.net.vnl import decode, default_vnl, parse, split_scheme, split_unquoted

VX_KEYS = ("v4", "v6", "port", "vni", "ttl", "if", "hashsize", "expiretime")


def test_scheme_split_and_plain_path() -> None:
    assert split_scheme("vxvde://239.1.2.3") == ("vxvde", "239.1.2.3")
    assert split_scheme("/tmp/sw") == ("vde", "/tmp/sw")
    assert split_scheme("VDE:///tmp/sw") == ("vde", "/tmp/sw")
    with pytest.raises(VNLError, match="bad module"):
        split_scheme("://x")
    with pytest.raises(VNLError, match="bad module"):
        split_scheme("a b://x")


def test_slash_style_with_abbreviated_keys() -> None:
    v = parse("vxvde://239.1.2.3/port=1234/vn=5/v4", "slash", VX_KEYS)
    assert v.scheme == "vxvde"
    assert v.address == "239.1.2.3"
    assert v.options == {"port": "1234", "vni": "5", "v4": ""}
    assert v.int_option("vni", 1) == 5
    assert v.int_option("ttl", 1) == 1
    assert v.flag("v4") and not v.flag("v6")


def test_slash_style_ipv6_group_and_empty_address() -> None:
    v = parse("vxvde://ff05:56de::1/ttl=2", "slash", VX_KEYS)
    assert v.address == "ff05:56de::1"
    assert v.options == {"ttl": "2"}
    v = parse("vxvde://", "slash", VX_KEYS)
    assert v.address == "" and v.options == {}


def test_unknown_and_ambiguous_keys_are_named() -> None:
    with pytest.raises(VNLError, match="unknown key 'colour'"):
        parse("vxvde://239.1.2.3/colour=red", "slash", VX_KEYS)
    with pytest.raises(VNLError, match="ambiguous key 'v'"):
        parse("vxvde://239.1.2.3/v", "slash", VX_KEYS)
    with pytest.raises(VNLError, match="not an integer"):
        parse("vxvde://g/port=abc", "slash", VX_KEYS).int_option("port", 0)


def test_bracket_style_path_port_and_group() -> None:
    keys = ("port", "mode", "group")
    v = parse("vde:///tmp/my sw[3]", "bracket", keys, bare_args=True)
    assert v.address == "/tmp/my sw" and v.args == ("3",) and v.options == {}
    v = parse("vde:///tmp/sw[port=4/mode=0660]", "bracket", keys, bare_args=True)
    assert v.options == {"port": "4", "mode": "0660"}
    v = parse("/tmp/sw[green]", "bracket", keys, bare_args=True)
    assert v.scheme == "vde" and v.args == ("green",)
    with pytest.raises(VNLError, match="unknown key 'green'"):
        parse("tap://t0[green]", "bracket", ("mtu",))
    with pytest.raises(VNLError, match="unbalanced"):
        parse("vde:///tmp/sw[3", "bracket", keys, bare_args=True)
    with pytest.raises(VNLError, match="unexpected text"):
        parse("vde:///tmp/sw[3]junk", "bracket", keys, bare_args=True)


def test_wrapper_style_nesting() -> None:
    v = parse("vlan://4[trunk]{vxvde://239.1.2.3/port=99}", "wrapper", ("trunk", "untag", "tag"))
    assert v.address == "4" and v.options == {"trunk": ""}
    assert v.nested == "vxvde://239.1.2.3/port=99"
    v = parse("agno://{vlan://3{vde:///tmp/sw[2]}}", "wrapper", ("ethtype",))
    assert v.address == "" and v.nested == "vlan://3{vde:///tmp/sw[2]}"
    inner = parse(v.nested or "", "wrapper", ())
    assert inner.address == "3" and inner.nested == "vde:///tmp/sw[2]"
    with pytest.raises(VNLError, match="needs a nested VNL"):
        parse("vlan://4", "wrapper", ())
    with pytest.raises(VNLError, match="empty nested"):
        parse("vlan://4{}", "wrapper", ())
    with pytest.raises(VNLError, match="after the nested"):
        parse("vlan://4{null://}x", "wrapper", ())
    with pytest.raises(VNLError, match="unbalanced"):
        parse("vlan://4{null://", "wrapper", ())


def test_quoting_escapes_and_percent() -> None:
    assert decode("'a/b'") == "a/b"
    assert decode('"x y"') == "x y"
    assert decode(r"a\/b") == "a/b"
    assert decode("a%2Fb%20c") == "a/b c"
    assert decode("100%") == "100%"
    v = parse("cmd://'ssh host vde_plug /tmp/sw'", "raw")
    assert v.address == "ssh host vde_plug /tmp/sw"
    v = parse("vxvde://239.1.2.3/if='ve/th0'", "slash", VX_KEYS)
    assert v.options["if"] == "ve/th0"
    v = parse(r"vde:///tmp/a\[b[2]", "bracket", ("port",), bare_args=True)
    assert v.address == "/tmp/a[b" and v.args == ("2",)
    with pytest.raises(VNLError, match="unterminated quote"):
        parse("vxvde://'239", "slash", VX_KEYS)


def test_split_unquoted_keeps_braces_together() -> None:
    assert split_unquoted("a/b{c/d}/e", "/") == ["a", "b{c/d}", "e"]


def test_default_vnl(tmp_path: os.PathLike[str]) -> None:
    home = str(tmp_path)
    assert default_vnl(home) == "vde://"
    os.makedirs(os.path.join(home, ".vde2"))
    sw = os.path.join(home, ".vde2", "default.switch")
    os.mkdir(sw)
    assert default_vnl(home) == "vde://" + sw
    os.makedirs(os.path.join(home, ".vdeplug"))
    with open(os.path.join(home, ".vdeplug", "default"), "w") as f:
        f.write("vxvde://239.9.9.9\nignored\n")
    assert default_vnl(home) == "vxvde://239.9.9.9"


@given(st.text(max_size=60))
def test_random_text_only_raises_vnl_error(text: str) -> None:
    for style in ("slash", "bracket", "wrapper", "raw"):
        try:
            parse(text, style, VX_KEYS, bare_args=True)  # type: ignore[arg-type]
        except VNLError:
            pass


def test_open_plug_unknown_module_names_it() -> None:
    from ioth.net import open_plug

    with pytest.raises(VNLError, match="unknown VNL module 'nosuch'"):
        open_plug("nosuch://x")
