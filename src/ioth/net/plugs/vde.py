"""``vde://DIR[port]``: client of a vde_switch (or of any switch speaking its protocol).

Wire protocol (``shared/specs/vde.md`` section 3, as vdeplug4's ``libvdeplug_vde`` speaks it):

1. a SOCK_DGRAM ``data`` socket bound to ``DIR/.PPPPP-SSSSS`` (pid, sequence number);
2. a SOCK_STREAM ``ctl`` socket connected to ``DIR/ctl`` (or ``DIR/GROUP`` for a port group);
3. one request on ``ctl``: magic 0xfeedface, version 3, type (0 new port, 1 port 0, ``N << 8``
   port N), the 110-byte ``sockaddr_un`` of ``data``, then the description (no NUL);
4. the switch answers with the 110-byte ``sockaddr_un`` of its own datagram socket; ``data`` is
   connected to it and our path unlinked.  ``ctl`` stays open: EOF on it means the switch is gone.

VNL: ``vde://DIR[N]`` (port N), ``vde://DIR[GROUP]`` (port group), keys ``port=``,
``portgroup=``, ``group=`` (group owning our data socket), ``mode=`` (its octal mode, default
0700) and ``mtu=`` (ioth extension; default 1500, up to 65535).  Without DIR the plug tries
``/var/run/vde.ctl`` then ``/tmp/vde.ctl``, like vdeplug4.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
import struct
from typing import Any, ClassVar, TypeVar

from ioth.errors import PlugClosedError, VNLError
from ioth.net.dgram import SOCKBUF as SOCKBUF
from ioth.net.dgram import DgramPlug
from ioth.net.dgram import set_bufs as set_bufs
from ioth.net.vnl import VNL, Style

SWITCH_MAGIC = 0xFEEDFACE
REQ_VERSION = 3
REQ_NEW_CONTROL = 0
REQ_NEW_PORT0 = 1
SUN_PATH_LEN = 108
SOCKADDR_UN_LEN = 2 + SUN_PATH_LEN  # 110
REQ_HEADER = struct.Struct("<III")
MAXDESCR = 128
#: directories tried when the VNL names none (vdeplug4's order)
FALLBACK_DIRS = ("/var/run/vde.ctl", "/tmp/vde.ctl")
#: directories for the data socket if DIR refuses it (vdeplug4's order)
FALLBACK_DATA_DIRS = ("/var/run", "/var/tmp", "/tmp")
MAX_MTU = 65535
_D = TypeVar("_D", int, None)


def mtu_option(vnl: VNL, kwargs: dict[str, Any], default: int, maximum: int = MAX_MTU) -> int:
    """The MTU from the VNL's ``mtu=`` option, else ``kwargs['mtu']``, else ``default``.

    Removes ``mtu`` from ``kwargs``; a value outside 68..``maximum`` is a VNLError.
    """
    mtu = kwargs.pop("mtu", None)
    if "mtu" in vnl.options:
        mtu = vnl.int_option("mtu", default)
    if mtu is None:
        mtu = default
    if not 68 <= int(mtu) <= maximum:
        raise VNLError(f"VNL {vnl.text!r}: mtu={mtu} out of range 68..{maximum}")
    return int(mtu)


def pack_sockaddr_un(path: str) -> bytes:
    """A ``struct sockaddr_un`` (family AF_UNIX, 108-byte NUL-padded path)."""
    raw = os.fsencode(path)
    if len(raw) >= SUN_PATH_LEN:
        raise OSError(errno.ENAMETOOLONG, f"socket path too long: {path}")
    return struct.pack("<H", socket.AF_UNIX) + raw.ljust(SUN_PATH_LEN, b"\0")


def unpack_sockaddr_un(data: bytes) -> str:
    """The path of a packed ``sockaddr_un``; OSError if it is not one."""
    if len(data) != SOCKADDR_UN_LEN:
        raise OSError(errno.EPROTO, f"switch answered {len(data)} bytes, expected 110")
    (family,) = struct.unpack_from("<H", data)
    if family != socket.AF_UNIX:
        raise OSError(errno.EPROTO, f"switch answered address family {family}")
    return os.fsdecode(data[2:].split(b"\0", 1)[0])


def build_request(req_type: int, data_path: str, description: str) -> bytes:
    """The version-3 connection request: 122 bytes plus the description (at most 128)."""
    descr = description.encode("utf-8", "replace")[:MAXDESCR]
    return (REQ_HEADER.pack(SWITCH_MAGIC, REQ_VERSION, req_type)
            + pack_sockaddr_un(data_path) + descr)


def octal_option(vnl: VNL, key: str, default: _D) -> int | _D:
    """Option ``key`` of ``vnl`` as an octal number (``default`` when absent or empty)."""
    text = vnl.options.get(key)
    if not text:
        return default
    try:
        return int(text, 8)
    except ValueError:
        raise VNLError(f"VNL {vnl.text!r}: {key}={text!r} is not an octal number") from None


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def group_id(group: str) -> int:
    """The numeric id of a group name (or of a number given as text)."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        try:
            return int(group)
        except ValueError:
            raise VNLError(f"unknown group {group!r}") from None


class VdePlug(DgramPlug):
    """A port of a vde_switch (or a compatible switch such as ioth's)."""

    STYLE: ClassVar[Style] = "bracket"
    KEYS: ClassVar[tuple[str, ...]] = ("port", "portgroup", "group", "mode", "mtu")
    BARE_ARGS: ClassVar[bool] = True
    DEFAULT_MTU: ClassVar[int] = 1500

    def __init__(self, directory: str = "", port: int = 0, portgroup: str | None = None,
                 group: str | None = None, mode: int = 0o700, mtu: int | None = None,
                 description: str | None = None, vnl: str = "") -> None:
        super().__init__(vnl or f"vde://{directory}", mtu)
        if not 68 <= self.mtu <= MAX_MTU:
            raise VNLError(f"VNL {self.vnl!r}: mtu={self.mtu} out of range 68..{MAX_MTU}")
        if description is None:
            description = f"ioth: user={_user_name()} pid={os.getpid()} mtu={self.mtu}"
        self._init_buffer()
        self.switch_path = ""
        self.directory = ""
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        my_path = ""
        try:
            ctl_path, req_type = self._connect_ctl(ctl, directory, port, portgroup)
            my_path = self._bind_data(data, self.directory)
            self._set_permissions(my_path, ctl_path, group, mode)
            ctl.sendall(build_request(req_type, my_path, description))
            ctl.settimeout(10.0)
            reply = b""
            while len(reply) < SOCKADDR_UN_LEN:
                chunk = ctl.recv(SOCKADDR_UN_LEN - len(reply))
                if not chunk:
                    raise OSError(errno.ECONNREFUSED,
                                  f"switch {ctl_path} refused the connection")
                reply += chunk
            self.switch_path = unpack_sockaddr_un(reply)
            data.connect(self.switch_path)
        except BaseException:
            ctl.close()
            data.close()
            raise
        finally:
            if my_path:
                try:
                    os.unlink(my_path)
                except OSError:
                    pass
        ctl.setblocking(False)
        self._set_socket(data)
        self._ctl = ctl
        self._ctl_fd = ctl.fileno()

    # -- opening -----------------------------------------------------------------------------
    def _connect_ctl(self, ctl: socket.socket, directory: str, port: int,
                     portgroup: str | None) -> tuple[str, int]:
        """Connect ``ctl``; returns (control socket path, request type)."""
        candidates = [os.path.realpath(directory)] if directory else list(FALLBACK_DIRS)
        if directory and not os.path.exists(directory):
            raise OSError(errno.ENOENT, f"no vde switch at {directory}")
        last: OSError | None = None
        for cand in candidates:
            if portgroup:
                path = os.path.join(cand, portgroup)
                try:
                    ctl.connect(path)
                    self.directory = cand
                    return path, REQ_NEW_CONTROL
                except OSError as exc:
                    last = exc
            path = os.path.join(cand, "ctl")
            try:
                ctl.connect(path)
            except OSError as exc:
                last = exc
                continue
            self.directory = cand
            if port < 0:
                return path, REQ_NEW_PORT0
            return path, REQ_NEW_CONTROL + (port << 8)
        where = directory or " or ".join(FALLBACK_DIRS)
        reason = last.strerror if last is not None and last.strerror else "no switch"
        raise OSError(last.errno if last is not None else errno.ENOENT,
                      f"cannot connect to vde switch {where}: {reason}")

    @staticmethod
    def _bind_data(data: socket.socket, directory: str) -> str:
        """Bind ``data`` to ``DIR/.PPPPP-SSSSS`` (or a fallback directory); returns the path."""
        pid = os.getpid()
        attempts = [(directory, ".")] + [(d, "vde.") for d in FALLBACK_DATA_DIRS]
        last: OSError | None = None
        for base, prefix in attempts:
            seq = 0
            while seq < 100000:
                path = f"{base}/{prefix}{pid:05d}-{seq:05d}"
                seq += 1
                try:
                    data.bind(path)
                    return path
                except OSError as exc:
                    last = exc
                    if exc.errno != errno.EADDRINUSE:
                        break
        assert last is not None
        raise last

    @staticmethod
    def _set_permissions(my_path: str, ctl_path: str, group: str | None, mode: int) -> None:
        """Let the switch write to our data socket (vdeplug4's rule)."""
        if group:
            os.chown(my_path, -1, group_id(group))
        elif mode & 0o077 == 0:
            try:
                st = os.stat(ctl_path)
            except OSError:
                st = None
            if st is not None and st.st_uid not in (0, os.geteuid()):
                try:
                    os.chown(my_path, -1, st.st_gid)
                    mode |= 0o070
                except OSError:
                    mode |= 0o077
        os.chmod(my_path, stat.S_IMODE(mode))

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> VdePlug:
        """Open from ``vde://DIR[N]``, ``vde://DIR[GROUP]`` or ``vde://DIR[port=N/...]``."""
        mtu = mtu_option(vnl, kwargs, cls.DEFAULT_MTU)
        portgroup: str | None = None
        for key in ("portgroup", "port"):
            if vnl.options.get(key):
                portgroup = vnl.options[key]
        if vnl.args:
            if len(vnl.args) > 1:
                raise VNLError(f"VNL {vnl.text!r}: more than one port {vnl.args!r}")
            portgroup = vnl.args[0]
        port = 0
        if portgroup is not None and portgroup[:1].isdigit():
            try:
                port = int(portgroup, 10)
            except ValueError:
                raise VNLError(f"VNL {vnl.text!r}: bad port {portgroup!r}") from None
            if port == 0:
                port = -1  # management port 0
            portgroup = None
        if portgroup is not None and ("/" in portgroup or portgroup in (".", "..")):
            raise VNLError(f"VNL {vnl.text!r}: bad port group name {portgroup!r}")
        return cls(vnl.address, port=port, portgroup=portgroup,
                   group=vnl.options.get("group") or None,
                   mode=octal_option(vnl, "mode", 0o700), mtu=mtu,
                   vnl=vnl.text or f"vde://{vnl.address}", **kwargs)

    # -- the plug API ------------------------------------------------------------------------
    def filenos(self) -> list[int]:
        """The data socket and the control socket (readable at EOF: switch gone)."""
        return [self._fd, self._ctl_fd]

    def _recv_error(self, exc: OSError) -> None:
        """ECONNREFUSED/ECONNRESET: the switch's socket went away (ctl tells if the switch is
        gone): not counted; other errors are."""
        self.counters.rx_errors += exc.errno not in (errno.ECONNREFUSED, errno.ECONNRESET)

    def _idle(self) -> None:
        """No frame to read: the readiness may be the control socket's, so raise
        PlugClosedError if the control connection has ended (the switch is gone)."""
        try:
            data = self._ctl.recv(256)
        except BlockingIOError:
            return
        except OSError as exc:
            raise PlugClosedError(exc.errno, f"{self.vnl}: switch gone: {exc}") from None
        if not data:
            raise PlugClosedError(errno.ECONNRESET, f"{self.vnl}: switch gone")
        # a vde_switch never writes on ctl after the reply: ignore anything it says

    def close(self) -> None:
        """Release the port (closing ctl tells the switch)."""
        if not self.closed:
            self._sock.close()
            self._ctl.close()
        super().close()

    def describe(self) -> str:
        """VNL and the switch's socket for this port."""
        return f"{self.vnl} ({self.switch_path})"
