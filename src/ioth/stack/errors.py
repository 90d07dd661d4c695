"""Errors raised inside the stack core."""

from __future__ import annotations

from ioth.wire.errors import WireError


class Drop(WireError):
    """A received frame is malformed or unacceptable; ``counter`` names what is counted."""

    def __init__(self, counter: str, detail: str = "") -> None:
        super().__init__(detail or counter)
        self.counter = counter
