"""Exception types shared across ioth.

User mistakes (a bad VNL, a bad configuration string, a bad command-line value) raise a subclass
of :class:`IothUserError`; the CLI prints its message on one line and exits non-zero.
"""

from __future__ import annotations


class IothUserError(ValueError):
    """An error caused by user input; its message names the offending part."""


class VNLError(IothUserError):
    """A Virtual Network Locator could not be parsed or opened."""


class ConfigError(IothUserError):
    """A configuration string (iothconf style) is invalid."""


class PlugClosedError(OSError):
    """The peer of a plug went away (switch gone, cable cut, EOF on a stream)."""
