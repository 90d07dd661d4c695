"""Pure parse/emit of every header ioth speaks; checksums.  No state, no I/O.

Conventions every module here follows (one protocol per module, e.g. ``wire/udp.py``):

* Module constants for field offsets, header lengths and protocol numbers.
* A ``@dataclass(frozen=True, slots=True)`` header class with typed fields, an RFC diagram in its
  docstring, ``__str__`` giving a one-line pretty print, and ``emit(...) -> bytes``.
* ``parse(buf) -> (header, payload)`` where ``buf`` is ``bytes`` or ``memoryview`` and ``payload``
  is a ``memoryview`` slice of ``buf`` (no copy).  Parse errors raise a subclass of
  :class:`ioth.wire.errors.WireError`: integrity errors (truncated, bad length, bad checksum)
  are separate from sanity errors (semantically invalid values).  Random bytes only ever raise
  ``WireError``.
* Addresses are raw ``bytes``: 6 for MACs, 4 for IPv4, 16 for IPv6 (fast to hash and compare on
  the hot path); helpers convert to and from text.
* Checksums live in :mod:`ioth.wire.checksum`; never loop over bytes in Python.

Modules: :mod:`~ioth.wire.checksum` (RFC 1071 sum, pseudo-headers, RFC 1624 update),
:mod:`~ioth.wire.ethernet` (Ethernet II, 802.1Q/802.1ad, MAC helpers), :mod:`~ioth.wire.arp`,
:mod:`~ioth.wire.ipv4` (options raw, fragmentation), :mod:`~ioth.wire.icmpv4`,
:mod:`~ioth.wire.ipv6` (extension header walker, fragmentation), :mod:`~ioth.wire.icmpv6`
(errors, echo, NDP with options, MLDv2), :mod:`~ioth.wire.udp`, :mod:`~ioth.wire.tcp`.

Hot path: building a frozen dataclass costs about a microsecond, so the data path uses the
object-free functions instead: ``parse_fast`` (returns a tuple of the hot fields, validates
lengths and checksums) and ``emit_fast`` / ``udp.emit`` (plain values in, header bytes out).
Transport ``emit`` methods return the header only (checksum over the payload included); the
caller joins ``eth + ip + l4 + payload`` once.  ICMP ``emit`` returns the whole message.
``benchmarks/bench_wire.py`` measures the per-frame cost.
"""
