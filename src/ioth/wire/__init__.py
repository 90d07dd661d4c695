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
"""
