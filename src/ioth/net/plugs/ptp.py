"""``ptp://PATH``: a point-to-point cable over AF_UNIX datagrams, wire compatible with
vdeplug4's ``ptp`` module (Debian's ``vde_plug ptp://PATH``).

Rule (as in vdeplug4): both ends use a SOCK_DGRAM socket, one datagram per frame.

* The first opener binds ``PATH`` and sends to ``PATH+``.  If ``PATH`` is a socket already, it
  probes it: a live socket means somebody is the first opener already; a refused one is stale and
  is removed.
* The second opener (``PATH`` is live) binds ``PATH+`` (removing a stale one; a live one means
  the cable is full: EADDRINUSE) and sends to ``PATH``.

Like vdeplug4 the sockets connect lazily to the peer's address (a connected AF_UNIX datagram
socket only accepts datagrams from its peer); after the peer restarts the first send fails, the
kernel forgets the dead peer, and the next send connects to the new one.  Each end removes its own
path on close.  Options: ``mtu=`` (default 1500, up to 65535), ``mode=`` (octal, default 0700),
``group=``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from typing import Any, ClassVar

from ioth.errors import VNLError
from ioth.net.dgram import DgramPlug
from ioth.net.plugs.vde import group_id, mtu_option, octal_option
from ioth.net.vnl import VNL, Style


def _probe(path: str) -> bool | None:
    """True if ``path`` is a live datagram socket, False if stale (removed), None if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
        return True
    except ConnectionRefusedError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return False
    except OSError:
        return None
    finally:
        probe.close()


class PtpPlug(DgramPlug):
    """One end of a point-to-point AF_UNIX cable."""

    STYLE: ClassVar[Style] = "bracket"
    KEYS: ClassVar[tuple[str, ...]] = ("mtu", "mode", "group")
    DEFAULT_MTU: ClassVar[int] = 1500

    def __init__(self, path: str, mtu: int | None = None, mode: int = 0o700,
                 group: str | None = None, vnl: str = "") -> None:
        super().__init__(vnl or f"ptp://{path}", mtu)
        if not path:
            raise VNLError(f"VNL {self.vnl!r}: ptp:// needs a socket path")
        self.path = path
        self._init_buffer()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            if _probe(path) is True:
                # second opener (connects lazily, on the first send)
                if _probe(path + "+") is True:
                    raise OSError(errno.EADDRINUSE, f"ptp cable {path} is in use by two peers")
                sock.bind(path + "+")
                self.my_path, self.peer_path = path + "+", path
                self.first = False
            else:
                sock.bind(path)
                self.my_path, self.peer_path = path, path + "+"
                self.first = True
            if group:
                os.chown(self.my_path, -1, group_id(group))
            os.chmod(self.my_path, stat.S_IMODE(mode))
        except BaseException:
            sock.close()
            raise
        self._set_socket(sock)

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> PtpPlug:
        """Open from ``ptp://PATH[mtu=N/mode=0700/group=G]``."""
        mtu = mtu_option(vnl, kwargs, cls.DEFAULT_MTU)
        return cls(vnl.address, mtu=mtu, mode=octal_option(vnl, "mode", 0o700),
                   group=vnl.options.get("group") or None, vnl=vnl.text, **kwargs)

    def _send_error(self, frame: bytes | bytearray | memoryview, exc: OSError) -> bool:
        """Not connected yet (or the peer restarted): connect to the peer's path and retry."""
        if exc.errno not in (errno.ENOTCONN, errno.EDESTADDRREQ):
            # EAGAIN/ENOBUFS: slow peer; ECONNREFUSED: peer gone (now disconnected)
            return False
        try:
            self._sock.connect(self.peer_path)
            self._sock.send(frame)
        except OSError:
            return False
        return True

    def _recv_error(self, exc: OSError) -> None:
        """A pending error of the socket (peer gone): reported once, then cleared; not counted."""

    def close(self) -> None:
        """Close the socket and remove our path."""
        if not self.closed:
            self._sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.my_path)
        super().close()
