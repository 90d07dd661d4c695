"""Hypothesis strategies shared by the wire tests."""

from __future__ import annotations

from hypothesis import strategies as st

mac = st.binary(min_size=6, max_size=6)
ip4 = st.binary(min_size=4, max_size=4)
ip6 = st.binary(min_size=16, max_size=16)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
port = u16
payload = st.binary(max_size=200)
