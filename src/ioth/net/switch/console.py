"""Management console of an ioth switch, speaking vde_switch's line protocol.

The console listens on an AF_UNIX SOCK_STREAM socket (``ioth switch --mgmt SOCK``); Debian's
``unixterm SOCK`` (or socat, or any line client) talks to it.  Framing, checked against Debian's
vde_switch 2.3.2:

* on connect: a banner (two lines and an empty one) then the prompt ``vde$ `` (the prompt is
  always preceded by a newline: ``"\\nvde$ "``);
* each input line is one command ``path args``; empty lines and ``#`` comments only get a prompt;
* a command that prints something answers ``0000 DATA END WITH '.'``, its lines, a line ``.``;
* then the status line: ``1000 Success`` or ``1000+errno`` and the error text (``1006 No such
  device or address``); an unknown command answers ``1038 Function not implemented``;
* ``logout`` and ``shutdown`` answer ``9999 END OF SESSION`` (no newline) and close.

Commands: help, showinfo, logout, shutdown, ds/showinfo, port/showinfo, port/print [N],
port/allprint [N], port/create N, port/remove N, port/setvlan N VLAN, port/sethub 0/1,
port/setnumports N, port/resetcounter [N], port/epclose N ID, vlan/create N, vlan/remove N,
vlan/addport N PORT, vlan/delport N PORT, vlan/print [N], vlan/allprint [N], hash/showinfo,
hash/setexpire N, hash/setsize N, hash/print, hash/find MAC [VLAN].  ``port/print`` adds one
line per port with the drop counters by reason and the port's largest frame.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioth.net.switch.core import SwitchConfigError, format_mac

if TYPE_CHECKING:
    from ioth.net.switch.server import SwitchServer

log = logging.getLogger(__name__)

VERSION = "0.1.0"
HEADER = (f"ioth switch V.{VERSION} (vde_switch compatible)\n"
          "(C) the ioth authors - LGPL-2.1-or-later\n")
PROMPT = b"\nvde$ "
DATA_START = "0000 DATA END WITH '.'"
END_OF_SESSION = b"9999 END OF SESSION"
MAX_LINE = 4096
NOVLAN = 4095  # what vde_switch prints for "no untagged VLAN"

LOGOUT = -1
SHUTDOWN = -2


class CommandError(Exception):
    """A command failed with ``errno``."""

    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.errno = code


def _int(text: str) -> int:
    """An integer as C's ``%i`` reads it (decimal, 0x hex, 0 octal); EINVAL otherwise."""
    text = text.strip()
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return int(text, 10)
    except ValueError:
        raise CommandError(errno.EINVAL) from None


def _ints(args: str, count: int) -> list[int]:
    parts = args.split()
    if len(parts) < count:
        raise CommandError(errno.EINVAL)
    return [_int(p) for p in parts[:count]]


@dataclass(frozen=True)
class Command:
    """One console command."""

    path: str
    syntax: str
    help: str
    #: (output lines, args) -> None; raises CommandError.  None for menu headings.
    run: Callable[[list[str], str], int | None] | None = None
    #: whether the reply has a data block
    data: bool = False


class CommandSet:
    """The commands of one switch and their interpreter (no I/O: lines in, text out)."""

    def __init__(self, server: SwitchServer) -> None:
        self.server = server
        s = self
        self.commands: list[Command] = [
            Command("ds", "============", "DATA SOCKET MENU"),
            Command("ds/showinfo", "", "show ds info", s.ds_showinfo, True),
            Command("help", "[arg]", "Help (limited to arg when specified)", s.help, True),
            Command("logout", "", "logout from this mgmt terminal", s.logout),
            Command("shutdown", "", "shutdown of the switch", s.shutdown),
            Command("showinfo", "", "show switch version and info", s.showinfo, True),
            Command("hash", "============", "HASH TABLE MENU"),
            Command("hash/showinfo", "", "show hash info", s.hash_showinfo, True),
            Command("hash/setsize", "N", "change hash size", s.hash_setsize),
            Command("hash/setexpire", "N", "change hash entries expire time", s.hash_setexpire),
            Command("hash/print", "", "print the hash table", s.hash_print, True),
            Command("hash/find", "MAC [VLAN]", "MAC lookup", s.hash_find, True),
            Command("port", "============", "PORT STATUS MENU"),
            Command("port/showinfo", "", "show port info", s.port_showinfo, True),
            Command("port/setnumports", "N", "set the number of ports", s.port_setnumports),
            Command("port/sethub", "0/1", "1=HUB 0=switch", s.port_sethub),
            Command("port/setvlan", "N VLAN", "set port VLAN (untagged)", s.port_setvlan),
            Command("port/create", "N", "create the port N (inactive|notallocatable)",
                    s.port_create),
            Command("port/remove", "N", "remove the port N", s.port_remove),
            Command("port/epclose", "N ID", "remove the endpoint port N/id ID", s.port_epclose),
            Command("port/resetcounter", "[N]", "reset the port (N) counters",
                    s.port_resetcounter),
            Command("port/print", "[N]", "print the port/endpoint table", s.port_print, True),
            Command("port/allprint", "[N]",
                    "print the port/endpoint table (including inactive port)",
                    s.port_allprint, True),
            Command("vlan", "============", "VLAN MANAGEMENT MENU"),
            Command("vlan/create", "N", "create the VLAN with tag N", s.vlan_create),
            Command("vlan/remove", "N", "remove the VLAN with tag N", s.vlan_remove),
            Command("vlan/addport", "N PORT", "add port to the vlan N (tagged)", s.vlan_addport),
            Command("vlan/delport", "N PORT", "remove port from the vlan N (tagged)",
                    s.vlan_delport),
            Command("vlan/print", "[N]", "print the list of defined vlan", s.vlan_print, True),
            Command("vlan/allprint", "[N]",
                    "print the list of defined vlan (including inactive port)", s.vlan_print,
                    True),
        ]
        self._by_path = {c.path: c for c in self.commands if c.run is not None}

    # -- the interpreter ------------------------------------------------------------------------
    def execute(self, line: str) -> tuple[str, int]:
        """Run one command line; returns (reply text, status: 0, errno, LOGOUT or SHUTDOWN)."""
        line = line.strip(" \t\r\n")
        if not line or line.startswith("#"):
            return "", 0
        path, _, args = line.partition(" ")
        path, args = path.strip(), args.strip()
        cmd = self._by_path.get(path)
        if cmd is None or cmd.run is None:
            return f"1{errno.ENOSYS:03d} {os.strerror(errno.ENOSYS)}\n", errno.ENOSYS
        out: list[str] = []
        try:
            with self.server.lock:
                rv = cmd.run(out, args) or 0
        except CommandError as exc:
            rv = exc.errno
        except SwitchConfigError as exc:
            rv = exc.errno
        except Exception:  # a bug in a command must not kill the switch or the session
            log.exception("switch console: %r failed", line)
            rv = errno.EIO
        if rv < 0:
            return "", rv
        text = ""
        if cmd.data:
            text = DATA_START + "\n" + "".join(s + "\n" for s in out) + ".\n"
        if rv == 0:
            text += "1000 Success\n"
        else:
            text += f"1{rv:03d} {os.strerror(rv)}\n"
        return text, rv

    # -- general --------------------------------------------------------------------------------
    def help(self, out: list[str], args: str) -> None:
        """help [prefix]"""
        out.append(f"{'COMMAND PATH':<18} {'SYNTAX':<15} HELP")
        out.append(f"{'------------':<18} {'--------------':<15} ------------")
        for c in self.commands:
            if c.path.startswith(args):
                out.append(f"{c.path:<18} {c.syntax:<15} {c.help}")

    def logout(self, out: list[str], args: str) -> int:
        """End this session."""
        return LOGOUT

    def shutdown(self, out: list[str], args: str) -> int:
        """Stop the switch."""
        return SHUTDOWN

    def showinfo(self, out: list[str], args: str) -> None:
        """Version, pid, uptime, management socket."""
        srv = self.server
        out.extend(HEADER.split("\n"))
        uptime = int(srv.engine.clock() - srv.started)
        out.append(f"pid {os.getpid()} MAC {format_mac(switch_mac(srv.directory))} "
                   f"uptime {uptime}")
        console = srv.console
        if console is not None:
            out.append(f"mgmt {console.path} perm 0{console.mode:03o}")

    def ds_showinfo(self, out: list[str], args: str) -> None:
        """Control directory and mode."""
        out.append(f"ctl dir {self.server.directory}")
        out.append(f"std mode 0{self.server.mode:03o}")

    # -- ports ----------------------------------------------------------------------------------
    def port_showinfo(self, out: list[str], args: str) -> None:
        """Number of ports, hub mode."""
        out.append(f"Numports={self.server.numports}")
        out.append(f"HUB={'true' if self.server.core.hub else 'false'}")
        out.append("counters=true")

    def port_print(self, out: list[str], args: str) -> None:
        """port/print [N]: active ports."""
        self._print_ports(out, args, inactive=False)

    def port_allprint(self, out: list[str], args: str) -> None:
        """port/allprint [N]: every port, inactive ones included."""
        self._print_ports(out, args, inactive=True)

    def _print_ports(self, out: list[str], args: str, inactive: bool) -> None:
        srv = self.server
        if args:
            n = _int(args)
            if not 0 <= n < srv.numports:
                raise CommandError(errno.EINVAL)
            port = srv.core.ports.get(n)
            if port is None or not (inactive or port.active):
                raise CommandError(errno.ENXIO)
            numbers = [n]
        else:
            numbers = [n for n in sorted(srv.core.ports) if inactive or srv.core.ports[n].active]
        for n in numbers:
            port = srv.core.ports[n]
            c = port.counters
            untagged = NOVLAN if port.untagged_vlan is None else port.untagged_vlan
            endpoints = srv.endpoints(n)
            active = "" if port.active else "IN"
            allocatable = "NOT " if n in srv.persistent else ""
            out.append(f"Port {n:04d} untagged_vlan={untagged:04d} {active}ACTIVE - "
                       f"Unnamed {allocatable}Allocatable")
            user = "NONE"
            for _, _, descr in endpoints:
                for word in descr.replace(",", " ").split():
                    if word.startswith("user="):
                        user = word[5:] or user
            out.append(f" Current User: {user} Access Control: (User: NONE - Group: NONE)")
            out.append(f" IN:  pkts {c.rx_frames:10d}          bytes {c.rx_bytes:20d}")
            out.append(f" OUT: pkts {c.tx_frames:10d}          bytes {c.tx_bytes:20d}")
            drops = " ".join(f"{k} {v}" for k, v in c.drops().items())
            tagged = ",".join(str(v) for v in sorted(port.tagged))
            vlans = "trunk" if port.trunk else f"tagged={tagged or '-'}"
            out.append(f" DROPS: {drops}  max_frame {port.max_frame} {vlans}")
            for ident, module, descr in endpoints:
                out.append(f"  -- endpoint ID {ident:04d} module {module:<12}: "
                           f"{descr or 'no endpoint description'}")

    def port_setvlan(self, out: list[str], args: str) -> None:
        """port/setvlan N VLAN (4095: no untagged VLAN)."""
        port, vlan = _ints(args, 2)
        srv = self.server
        if not 0 <= port < srv.numports or not 0 <= vlan <= NOVLAN:
            raise CommandError(errno.EINVAL)
        if port not in srv.core.ports:
            raise CommandError(errno.ENXIO)
        srv.core.set_untagged_vlan(port, None if vlan == NOVLAN else vlan)

    def port_create(self, out: list[str], args: str) -> None:
        """port/create N"""
        self.server.create_port(_int(args) if args else -1)

    def port_remove(self, out: list[str], args: str) -> None:
        """port/remove N"""
        n = _int(args) if args else -1
        if not 0 <= n < self.server.numports:
            raise CommandError(errno.EINVAL)
        self.server.remove_port(n)

    def port_sethub(self, out: list[str], args: str) -> None:
        """port/sethub 0/1"""
        self.server.core.hub = bool(_int(args)) if args else False
        self.server.core.flush()

    def port_setnumports(self, out: list[str], args: str) -> None:
        """port/setnumports N (no port in use may be left outside)."""
        n = _int(args)
        if n < 2:
            raise CommandError(errno.EINVAL)
        if any(p >= n for p in self.server.core.ports):
            raise CommandError(errno.EADDRINUSE)
        self.server.numports = n

    def port_resetcounter(self, out: list[str], args: str) -> None:
        """port/resetcounter [N]"""
        ports = self.server.core.ports
        if args:
            n = _int(args)
            if not 0 <= n < self.server.numports:
                raise CommandError(errno.EINVAL)
            if n in ports:
                ports[n].counters.reset()
        else:
            for port in ports.values():
                port.counters.reset()

    def port_epclose(self, out: list[str], args: str) -> None:
        """port/epclose N ID"""
        port, ident = _ints(args, 2)
        if not any(i == ident for i, _, _ in self.server.endpoints(port)):
            raise CommandError(errno.ENXIO)
        self.server.close_endpoint(port, ident)

    # -- VLANs ----------------------------------------------------------------------------------
    def vlan_create(self, out: list[str], args: str) -> None:
        """vlan/create N"""
        if not args:
            raise CommandError(errno.EINVAL)
        self.server.core.create_vlan(_int(args))

    def vlan_remove(self, out: list[str], args: str) -> None:
        """vlan/remove N"""
        if not args:
            raise CommandError(errno.EINVAL)
        self.server.core.remove_vlan(_int(args))

    def _vlan_port(self, args: str) -> tuple[int, int]:
        vlan, port = _ints(args, 2)
        if not 0 <= vlan < NOVLAN or not 0 <= port < self.server.numports:
            raise CommandError(errno.EINVAL)
        if vlan not in self.server.core.vlans or port not in self.server.core.ports:
            raise CommandError(errno.ENXIO)
        return vlan, port

    def vlan_addport(self, out: list[str], args: str) -> None:
        """vlan/addport N PORT"""
        vlan, port = self._vlan_port(args)
        if vlan == 0:
            raise CommandError(errno.EINVAL)  # VLAN 0 is the untagged default
        self.server.core.add_tagged_vlan(port, vlan)

    def vlan_delport(self, out: list[str], args: str) -> None:
        """vlan/delport N PORT"""
        vlan, port = self._vlan_port(args)
        self.server.core.remove_tagged_vlan(port, vlan)

    def vlan_print(self, out: list[str], args: str) -> None:
        """vlan/print [N]"""
        core = self.server.core
        if args:
            vlan = _int(args)
            if not 0 <= vlan < NOVLAN:
                raise CommandError(errno.EINVAL)
            if vlan not in core.vlans:
                raise CommandError(errno.ENXIO)
            vlans = [vlan]
        else:
            vlans = sorted(core.vlans)
        for vlan in vlans:
            out.append(f"VLAN {vlan:04d}")
            for number, tagged in core.vlan_members(vlan):
                out.append(f" -- Port {number:04d} tagged={int(tagged)} active=1 "
                           "status=Forwarding")
            if vlan:
                for number in sorted(core.ports):
                    if core.ports[number].trunk:
                        out.append(f" -- Port {number:04d} tagged=1 active=1 "
                                   "status=Forwarding trunk")

    # -- MAC table ------------------------------------------------------------------------------
    def hash_showinfo(self, out: list[str], args: str) -> None:
        """Table size, entries, ageing."""
        core = self.server.core
        out.append(f"Hash size {core.table_size}")
        out.append(f"Hash entries {core.table_entries}")
        out.append(f"GC expire {int(core.ageing)} secs")
        c = core.counters
        out.append(f"Learned {c.learned} moved {c.moved} expired {c.expired} "
                   f"table full {c.table_full}")

    def hash_setsize(self, out: list[str], args: str) -> None:
        """hash/setsize N"""
        n = _int(args) if args else 0
        if n < 1:
            raise CommandError(errno.EINVAL)
        core = self.server.core
        core.table_size = n
        if core.table_entries > n:
            core.flush()

    def hash_setexpire(self, out: list[str], args: str) -> None:
        """hash/setexpire N"""
        n = _int(args) if args else 0
        if n < 1:
            raise CommandError(errno.EINVAL)
        self.server.core.set_ageing(n)

    def hash_print(self, out: list[str], args: str) -> None:
        """The MAC table."""
        srv = self.server
        for i, row in enumerate(srv.core.table(srv.engine.clock())):
            out.append(f"Hash: {i:04d} Addr: {format_mac(row.mac)} VLAN {row.vlan:04d} "
                       f"to port: {row.port:03d}  age {int(row.age)} secs")

    def hash_find(self, out: list[str], args: str) -> None:
        """hash/find MAC [VLAN]"""
        parts = args.split()
        if not parts:
            raise CommandError(errno.EINVAL)
        try:
            mac = bytes.fromhex(parts[0].replace(":", "").replace("-", ""))
        except ValueError:
            raise CommandError(errno.EINVAL) from None
        if len(mac) != 6:
            raise CommandError(errno.EINVAL)
        vlan = _int(parts[1]) if len(parts) > 1 else 0
        srv = self.server
        port = srv.core.lookup(mac, vlan, srv.engine.clock())
        if port is None:
            raise CommandError(errno.ENODEV)
        out.append(f"Hash: {0:04d} Addr: {format_mac(mac)} VLAN {vlan:04d} to port: {port:03d}")


def switch_mac(directory: str) -> bytes:
    """A stable, locally administered MAC for ``showinfo`` (derived from the directory)."""
    digest = bytearray(hashlib.sha256(directory.encode()).digest()[:6])
    digest[0] = (digest[0] | 0x02) & 0xFE
    return bytes(digest)


class _Session:
    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()


class ManagementConsole:
    """The listening management socket and its sessions, served on the switch's engine."""

    def __init__(self, server: SwitchServer, path: str, mode: int = 0o600) -> None:
        self.server = server
        self.path = os.path.abspath(path)
        self.mode = mode
        self.commands = CommandSet(server)
        self.closed = False
        self._sessions: dict[int, _Session] = {}
        if os.path.exists(self.path):
            from ioth.net.switch.server import socket_in_use
            if socket_in_use(self.path):
                raise OSError(errno.EADDRINUSE, f"management socket {path} is in use")
            os.unlink(self.path)  # stale socket of a dead switch
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self.path)
            os.chmod(self.path, mode)
            sock.listen(15)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"management socket {self.path}: {exc.strerror}") from None
        self._sock = sock
        server.engine.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        conn.settimeout(0.5)  # a client that does not read its output is dropped
        session = _Session(conn)
        fd = conn.fileno()
        self._sessions[fd] = session
        if self._write(session, HEADER.encode() + PROMPT):
            self.server.engine.add_reader(fd, lambda: self._readable(fd))

    def _write(self, session: _Session, data: bytes) -> bool:
        try:
            session.sock.sendall(data)
            return True
        except OSError:
            self._end(session)
            return False

    def _end(self, session: _Session) -> None:
        fd = session.sock.fileno()
        self._sessions.pop(fd, None)
        if fd >= 0:
            self.server.engine.remove_reader(fd)
        session.sock.close()

    def _readable(self, fd: int) -> None:
        session = self._sessions.get(fd)
        if session is None:
            return
        try:
            chunk = session.sock.recv(4096)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._end(session)
            return
        session.buf += chunk
        while True:
            nl = session.buf.find(b"\n")
            if nl < 0:
                if len(session.buf) > MAX_LINE:
                    self._end(session)
                return
            raw = bytes(session.buf[:nl])
            del session.buf[: nl + 1]
            text, rv = self.commands.execute(raw.decode("utf-8", "replace"))
            if rv in (LOGOUT, SHUTDOWN):
                self._write(session, END_OF_SESSION)
                self._end(session)
                if rv == SHUTDOWN:
                    self.server.shutdown()
                return
            if not self._write(session, text.encode() + PROMPT):
                return

    def close(self) -> None:
        """Close every session and the listening socket."""
        if self.closed:
            return
        self.closed = True
        for session in list(self._sessions.values()):
            self._end(session)
        self.server.engine.remove_reader(self._sock.fileno())
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
