"""``cmd://"command args"``: a child process carrying the frames on its stdin/stdout.

Frames use stream framing (:mod:`ioth.net.stream`), as vdeplug4's ``cmd`` module and
``vde_plug = command`` do, so ``cmd://"ssh host vde_plug /tmp/sw"`` is a cable to a remote
switch.  The command line is split like a shell would split words (no shell runs it).  When the
child closes its stdout or exits, :meth:`CmdPlug.recv_frames` raises PlugClosedError; closing the
plug stops the child (SIGTERM by pid, SIGKILL if it lingers).  Option: ``mtu=`` (default 9216,
frames of up to 9234 bytes like vde_plug; up to 65517).
"""

from __future__ import annotations

import contextlib
import errno
import shlex
import subprocess
from typing import Any, ClassVar

from ioth.errors import PlugClosedError, VNLError
from ioth.net.plugs.stream_plug import STREAM_MAX_MTU, STREAM_MTU, StreamPlug
from ioth.net.plugs.vde import mtu_option
from ioth.net.vnl import VNL, Style


class CmdPlug(StreamPlug):
    """A child process speaking stream framing on its stdin/stdout."""

    STYLE: ClassVar[Style] = "bracket"
    KEYS: ClassVar[tuple[str, ...]] = ("mtu",)
    DEFAULT_MTU: ClassVar[int] = STREAM_MTU

    def __init__(self, argv: list[str], mtu: int | None = None, vnl: str = "") -> None:
        if not argv:
            raise VNLError(f"VNL {vnl!r}: cmd:// needs a command")
        self.argv = list(argv)
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    bufsize=0, close_fds=True)
        except FileNotFoundError:
            raise VNLError(f"VNL {vnl!r}: command {self.argv[0]!r} not found") from None
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            super().__init__(proc.stdout.fileno(), proc.stdin.fileno(), mtu,
                             vnl or "cmd://" + shlex.join(self.argv))
        except BaseException:
            self._stop_child()
            raise

    @classmethod
    def from_vnl(cls, vnl: VNL, **kwargs: Any) -> CmdPlug:
        """Open from ``cmd://"command args"[mtu=N]``."""
        mtu = mtu_option(vnl, kwargs, STREAM_MTU, STREAM_MAX_MTU)
        try:
            argv = shlex.split(vnl.address)
        except ValueError as exc:
            raise VNLError(f"VNL {vnl.text!r}: bad command line: {exc}") from None
        return cls(argv, mtu=mtu, vnl=vnl.text, **kwargs)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def recv_frames(self, limit: int = 64) -> list[bytes]:
        """Frames from the child; PlugClosedError (with its exit status) once it is done."""
        try:
            return super().recv_frames(limit)
        except PlugClosedError as exc:
            try:
                status = self.proc.wait(0.5)  # its stdout ended: it is exiting
            except subprocess.TimeoutExpired:
                raise exc from None
            raise PlugClosedError(errno.EPIPE,
                                  f"{self.vnl}: command exited with status {status}") from exc

    def _stop_child(self) -> None:
        proc = self.proc
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.2)  # most children leave at EOF on stdin
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(2.0)

    def close(self) -> None:
        """Close the pipes and stop the child by its pid."""
        if not self.closed:
            super().close()
            self._stop_child()
        self.closed = True
