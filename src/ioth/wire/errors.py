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


class ParameterProblemError(SanityError):
    """An IPv6 extension header or option must be rejected (RFC 8200 section 4).

    ``code`` and ``pointer`` are ready for an ICMPv6 Parameter Problem (the pointer counts from the
    start of the IPv6 header); ``send_icmp`` tells whether an ICMPv6 error should be sent at all
    (false for the "discard silently" option action, and for "11" options with a multicast
    destination).
    """

    def __init__(self, message: str, code: int, pointer: int, send_icmp: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.pointer = pointer
        self.send_icmp = send_icmp
