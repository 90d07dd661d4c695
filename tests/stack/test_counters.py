"""The stack's counters (:class:`ioth.stack.core.Counters`) read exactly as a ``Counter``.

``Counters`` only gives item assignment back to dict's C slot (speed); every observation —
item reads, missing keys, iteration, ``items()``, arithmetic, ``most_common``, equality —
must be what a plain :class:`collections.Counter` fed the same operations shows, and the
stack's own counters must match between the fast class and a plain Counter (knob
``COUNTERS_FAST``) frame by frame.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ioth.stack.core as core_mod
from ioth.stack.core import Counters, StackCore

KEYS = st.sampled_from(["ipv4.rx", "ipv4.rx_delivered", "tcp.rx", "arp.rx", "eth.rx_runt"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("inc"), KEYS, st.integers(1, 5)),
        st.tuples(st.just("set"), KEYS, st.integers(-3, 10)),
        st.tuples(st.just("del"), KEYS, st.just(0)),
        st.tuples(st.just("update"), KEYS, st.integers(0, 4)),
        st.tuples(st.just("read"), KEYS, st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_counters_observe_exactly_as_a_counter(ops: list[tuple[str, str, int]]) -> None:
    fast: Counter[str] = Counters()
    ref: Counter[str] = Counter()
    for kind, key, n in ops:
        for c in (fast, ref):
            if kind == "inc":
                c[key] += n
            elif kind == "set":
                c[key] = n
            elif kind == "del":
                if key in c:  # (a missing key: Counter ignores it, Counters raises)
                    del c[key]
            elif kind == "update":
                c.update({key: n})
        assert fast[key] == ref[key]
        assert list(fast.items()) == list(ref.items())
        assert fast == ref
    assert fast.most_common() == ref.most_common()
    assert fast.total() == ref.total()
    assert +fast == +ref
    assert fast - ref == Counter()
    assert dict(fast + ref) == dict(ref + ref)


def test_missing_key_reads_zero_and_class_is_a_counter() -> None:
    c = StackCore().counters
    assert isinstance(c, Counters) and isinstance(c, Counter)
    assert c["never.counted"] == 0
    assert "never.counted" not in c
    c["x.y"] += 2
    del c["x.y"]
    assert c["x.y"] == 0


def test_item_assignment_is_dicts_own_slot() -> None:
    # what makes it fast: no Python-level __setitem__/__delitem__ in the class chain
    assert Counters.__delitem__ is dict.__delitem__
    assert Counters.__setitem__ is dict.__setitem__


def _ping_and_garbage(core: StackCore) -> None:
    mac = bytes.fromhex("020000000001")
    iface = core.add_interface("eth0", mac, 1500)
    iface.up = True
    core.add_addr4(iface.index, bytes([192, 0, 2, 1]), 24, 0.0)
    peer = bytes.fromhex("020000000002")
    # an ARP request for our address, a runt, an unknown ethertype, a frame for another host
    arp = (b"\xff" * 6 + peer + b"\x08\x06" + bytes.fromhex("0001080006040001") + peer
           + bytes([192, 0, 2, 2]) + b"\0" * 6 + bytes([192, 0, 2, 1]))
    for frame in (arp, b"\x01\x02", mac + peer + b"\x88\xb5" + b"\0" * 46,
                  peer + mac + b"\x08\x00" + b"\0" * 46):
        core.input_frame(iface.index, frame, 1.0)


def test_stack_counters_match_a_plain_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = StackCore()
    monkeypatch.setattr(core_mod, "COUNTERS_FAST", 0)
    plain = StackCore()
    assert type(plain.counters) is Counter and type(fast.counters) is Counters
    _ping_and_garbage(fast)
    _ping_and_garbage(plain)
    assert fast.counters["arp.rx"] == 1
    assert dict(fast.counters) == dict(plain.counters)
    assert fast.counters_by_protocol() == plain.counters_by_protocol()
