"""Real-peer helpers: require a tool, create and remove network namespaces, run commands in them.

Under CI (``CI=true``) a missing peer fails the test; elsewhere it skips it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"required peer missing under CI: {reason}")
    pytest.skip(reason)


def require_root() -> None:
    """The test needs root (network namespaces, TAPs)."""
    if os.geteuid() != 0:
        missing("needs root for network namespaces")
    if not os.path.exists("/dev/net/tun"):
        missing("needs /dev/net/tun")


def require_tools(*names: str) -> None:
    """Each of ``names`` must be an executable on PATH."""
    for name in names:
        if shutil.which(name) is None:
            missing(f"{name} is not installed")


def run(cmd: Sequence[str], check: bool = True, timeout: float = 30, **kw: object
        ) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text."""
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True,
                          timeout=timeout, **kw)  # type: ignore[call-overload]


class Netns:
    """A network namespace created for one test; deleted by :meth:`delete`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[bytes]] = []

    def argv(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` prefixed to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, cmd: Sequence[str], check: bool = True, timeout: float = 30
            ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the namespace and wait for it."""
        return run(self.argv(cmd), check=check, timeout=timeout)

    def sh(self, script: str, check: bool = True, timeout: float = 30
           ) -> subprocess.CompletedProcess[str]:
        """Run a shell script in the namespace."""
        return self.run(["sh", "-c", script], check=check, timeout=timeout)

    def popen(self, cmd: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in the namespace; it is stopped (by pid) when the namespace is deleted."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            self.argv(cmd), start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def delete(self) -> None:
        """Stop the processes started here, then delete the namespace."""
        for proc in self.procs:
            stop_process(proc)
        run(["ip", "netns", "delete", self.name], check=False)


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 5
                 ) -> None:
    """Stop a process we started (and its process group) by pid."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout)


@contextlib.contextmanager
def netns(prefix: str = "ioth") -> Iterator[Netns]:
    """A fresh network namespace with loopback up, deleted afterwards."""
    require_root()
    name = f"{prefix}-{secrets.token_hex(4)}"
    run(["ip", "netns", "add", name])
    ns = Netns(name)
    try:
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        ns.delete()


#: the kernel's side of :func:`kernel_lan`; the ioth stack's default configuration
KERNEL4, KERNEL6 = "192.0.2.1", "2001:db8::1"
IOTH_LAN_CONFIG = "eth,ip=192.0.2.2/24,ip=2001:db8::2/64"


@contextlib.contextmanager
def kernel_lan(prefix: str, *, offload: bool = False, config: str = IOTH_LAN_CONFIG
               ) -> Iterator[tuple[Netns, Any, str]]:
    """A namespace whose kernel has 192.0.2.1/24 and 2001:db8::1/64 on a TAP that is the vde0
    of a new ioth stack (by default 192.0.2.2 / 2001:db8::2, DAD done); yields
    ``(ns, stack, tap)`` and closes the stack and deletes the namespace afterwards."""
    import ioth  # late: the helpers are imported by tests that never build a stack

    require_root()
    require_tools("ip")
    with netns(prefix) as ns:
        tap = prefix[:6] + secrets.token_hex(4)
        flags = "/offload" if offload else ""
        stack = ioth.Stack(f"tap://{tap}[netns={ns.name}/up{flags}]", config)
        try:
            ns.sh(f"ip addr add {KERNEL4}/24 dev {tap}; "
                  f"ip addr add {KERNEL6}/64 dev {tap} nodad; ip link set {tap} up")
            assert stack.wait_dad(5)
            yield ns, stack, tap
        finally:
            stack.close()


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition") -> None:
    """Poll ``predicate()`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def wait_for_link(ns: Netns, ifname: str, timeout: float = 10.0) -> None:
    """Wait until ``ifname`` exists in ``ns``."""
    wait_for(lambda: ns.run(["ip", "link", "show", ifname], check=False).returncode == 0,
             timeout, what=f"link {ifname} in {ns.name}")


def ioth_cmd(*args: str) -> list[str]:
    """argv that runs the ioth CLI of this checkout."""
    import sys
    return [sys.executable, "-m", "ioth.cli.main", *args]
