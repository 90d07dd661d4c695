"""Parse errors raised by :mod:`ioth.wire`."""

from __future__ import annotations

from ioth.errors import IothUserError


class WireError(ValueError):
    """Base of every parse error: the frame is counted and dropped."""


class IntegrityError(WireError):
    """The bytes are damaged: truncated, inconsistent lengths, bad checksum."""


class TruncatedError(IntegrityError):
    """The buffer is shorter than the header or the length it announces."""


class ChecksumError(IntegrityError):
    """A checksum does not verify."""


class SanityError(WireError):
    """The bytes are intact but the values are invalid (bad version, reserved bits, ...)."""


class AddressError(IothUserError):
    """A textual address (MAC, IPv4, IPv6) given by the user could not be parsed."""
